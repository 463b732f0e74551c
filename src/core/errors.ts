/**
 * Every error ce-broker raises on purpose is a `BrokerError` with a stable `code`.
 * The codes, their meaning and their fix are listed in the README's error table.
 */

/**
 * What the publish adapter does with a publish that a hook refused:
 * - `reject`: the publisher is disconnected (MQTT 3.1.1 has no negative ack);
 * - `dead-letter`: diverted to `$DLQ/<topic>`, the publisher is acked and stays connected;
 * - `discard`: diverted to `$DISCARD/<topic>`, which nobody can subscribe to.
 */
export type Disposition = 'reject' | 'dead-letter' | 'discard'

/** Base class of every error ce-broker raises on purpose. */
export abstract class BrokerError extends Error {
  /** Stable machine-readable code, `BRK_<AREA>_<PROBLEM>`. */
  abstract readonly code: `BRK_${string}`
  /** What the publish adapter does when a hook throws this error. */
  readonly disposition: Disposition = 'reject'
  /** HTTP status the API answers with when this error reaches a route. */
  readonly statusCode: number = 500

  /**
   * Whether the refused publish is kept as a dead letter (record in the store and on
   * `$DLQ/<topic>`). By default what is diverted to the dead-letter queue is kept.
   */
  get deadLetter (): boolean {
    return this.disposition === 'dead-letter'
  }

  /** Whether the publisher is told on `$rejections/<clientId>`: what is dead-lettered is, and what is refused but not kept may be. */
  get toldToPublisher (): boolean {
    return this.deadLetter
  }

  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = new.target.name
  }
}

/** A config file, environment variable or flag is invalid; start-up stops. */
export class ConfigError extends BrokerError {
  readonly code = 'BRK_CONFIG_INVALID'
  override readonly statusCode = 500
  /**
   * @param source where the value came from: `config file broker.yaml`, `env CE_BROKER_MQTT_PORT`, `flag --mqtt-port`
   * @param path dotted key path such as `mqtt.port`
   */
  constructor (readonly source: string, readonly path: string, detail: string, options?: ErrorOptions) {
    super(path === '' ? `${source}: ${detail}` : `${source}: ${path} ${detail}`, options)
  }
}

/** A plugin is wired wrongly: missing dependency, setup failure or timeout. */
export class PluginError extends BrokerError {
  readonly code = 'BRK_PLUGIN_INVALID'
  constructor (readonly plugin: string, detail: string, options?: ErrorOptions) {
    super(`plugin "${plugin}": ${detail}`, options)
  }
}

/** A schema file of the registry is unreadable, invalid or conflicts with another; start-up stops. */
export class SchemaFileError extends BrokerError {
  readonly code = 'BRK_SCHEMA_FILE_INVALID'
  constructor (readonly file: string, detail: string, options?: ErrorOptions) {
    super(`schema ${file} ${detail}`, options)
  }
}

/** Why an event was refused; the reason codes of PRODUCT §2 (and `delivery_failed` for webhooks). */
export type RejectReason =
  | 'payload_too_large' | 'invalid_json' | 'invalid_cloudevent' | 'type_topic_mismatch'
  | 'unknown_type' | 'schema_validation_failed' | 'no_matching_rule'

/** One problem in an event: a JSON pointer into the event and what is wrong there. */
export interface EventProblem {
  readonly path: string
  readonly message: string
}

/** HTTP status of each reason when an event arrives over HTTP. */
const REASON_STATUS: Readonly<Record<RejectReason, number>> = {
  payload_too_large: 413,
  invalid_json: 400,
  invalid_cloudevent: 400,
  type_topic_mismatch: 400,
  no_matching_rule: 400,
  unknown_type: 422,
  schema_validation_failed: 422
}

/** What is known of an event, for logs, records and later plugins (nothing when it was not a CloudEvent). */
export interface EventSummary {
  readonly id?: string
  readonly type?: string
  readonly source?: string
  readonly time?: string
  /** Extension values that tie one business flow together across services. */
  readonly correlationid?: unknown
  readonly causationid?: unknown
  readonly traceparent?: unknown
}

/**
 * An event the pipeline refused. `reason` is the PRODUCT §2 code; `problems` say
 * where and why. It is always dead-lettered: `onInvalid: "dlq"` acks the publisher,
 * `"disconnect"` drops it.
 */
export class EventRejectedError extends BrokerError {
  readonly code = 'BRK_EVENT_REJECTED'
  override readonly disposition: Disposition
  override readonly statusCode: number

  constructor (
    readonly reason: RejectReason,
    readonly topic: string,
    readonly problems: readonly EventProblem[],
    onInvalid: 'dlq' | 'disconnect',
    readonly event: EventSummary = {}
  ) {
    const first = problems[0]
    super(`event on "${topic}" rejected: ${reason}${first === undefined ? '' : ` (${first.path === '' ? '' : `${first.path} `}${first.message})`}`)
    this.disposition = onInvalid === 'disconnect' ? 'reject' : 'dead-letter'
    this.statusCode = REASON_STATUS[reason]
  }

  override get deadLetter (): boolean {
    return true
  }
}

/**
 * The same event (`source` + `id`) was accepted already within the idempotency
 * window. The publisher is acked as usual; the copy reaches no one and is not
 * dead-lettered (nothing to replay), but an MQTT publisher is told on
 * `$rejections/<clientId>` with reason `duplicate` (PRODUCT §3), so a second run of
 * the same publish is not silent. HTTP answers 200 `{ "duplicate": true }`.
 */
export class DuplicateEventError extends BrokerError {
  readonly code = 'BRK_EVENT_DUPLICATE'
  override readonly disposition = 'discard'
  override readonly statusCode = 200
  /** The reason of the record told on `$rejections`. */
  readonly reason = 'duplicate'

  constructor (readonly topic: string, readonly event: { readonly id: string, readonly source: string }) {
    super(`event ${JSON.stringify(event.id)} from ${JSON.stringify(event.source)} on "${topic}" is a duplicate`)
  }

  override get deadLetter (): boolean {
    return false
  }

  override get toldToPublisher (): boolean {
    return true
  }
}

/**
 * An accepted event that could not be delivered to a webhook subscription: its
 * attempts ran out or the endpoint refused it for good (`delivery_failed`), or the
 * delivery queue was full (`queue_full`). Kept as a dead letter for that subscription.
 */
export class DeliveryFailedError extends BrokerError {
  readonly code = 'BRK_DELIVERY_FAILED'
  override readonly disposition = 'dead-letter'

  constructor (
    readonly reason: 'delivery_failed' | 'queue_full',
    readonly subscription: string,
    readonly eventId: string | undefined,
    readonly attempts: number,
    readonly lastStatus: number | undefined,
    detail: string
  ) {
    super(`delivery to subscription ${subscription} failed (${reason}): ${detail}`)
  }
}

/** A listener could not bind its address (port in use, address not available, permission). */
export class ListenError extends BrokerError {
  readonly code = 'BRK_LISTEN_FAILED'
  constructor (readonly listener: string, readonly address: string, options: { cause: unknown }) {
    super(`cannot listen for ${listener} on ${address}: ${messageOf(options.cause)}`, options)
  }
}

/** A client tried to publish to a reserved `$` topic (`$SYS/`, `$DLQ/`, `$audit/`, ...). */
export class ReservedTopicError extends BrokerError {
  readonly code = 'BRK_TOPIC_RESERVED'
  /** Acked and delivered to no one, as Mosquitto and the Paho interoperability tests expect: the client stays connected. */
  override readonly disposition = 'discard'
  override readonly statusCode = 403
  /** Told on `$rejections` and audited like any publish the ACL refuses. */
  readonly reason = 'not_authorized'
  constructor (readonly topic: string) {
    super(`publishing to "${topic}" is not allowed: topics starting with "$" are reserved for the broker`)
  }

  override get deadLetter (): boolean {
    return false
  }

  override get toldToPublisher (): boolean {
    return true
  }
}

/**
 * A publish over a limit of `limits` that is checked after parsing (topic bytes). Like
 * a payload over the limit: the client is disconnected, nothing is kept.
 */
export class LimitExceededError extends BrokerError {
  readonly code = 'BRK_LIMIT_EXCEEDED'
  override readonly statusCode = 400
  constructor (readonly limit: string, message: string) {
    super(message)
  }
}

/**
 * A publish that no ACL rule grants the client. The publisher is acked and stays
 * connected; the message reaches no one and is not dead-lettered (there is nothing
 * to replay), but it is told on `$rejections/<clientId>` and audited with reason
 * `not_authorized`.
 */
export class PublishNotAuthorizedError extends BrokerError {
  readonly code = 'BRK_PUBLISH_NOT_AUTHORIZED'
  override readonly disposition = 'discard'
  override readonly statusCode = 403
  readonly reason = 'not_authorized'

  constructor (readonly topic: string, readonly username: string | undefined) {
    super(`${username === undefined ? 'an anonymous client' : `user ${JSON.stringify(username)}`} may not publish to "${topic}"`)
  }

  override get deadLetter (): boolean {
    return false
  }

  override get toldToPublisher (): boolean {
    return true
  }
}

/**
 * A CONNECT the broker refuses, carrying the MQTT 3.1.1 CONNACK return code
 * (2 identifier rejected, 3 server unavailable, 4 bad user name or password, 5 not authorized).
 */
export class ConnectRefusedError extends BrokerError {
  readonly code = 'BRK_CONNECT_REFUSED'
  /** @param reason what the audit and the metrics call it: `bad_credentials`, `no_credentials`, `rate_limited`, `identifier_rejected`, ... */
  constructor (readonly returnCode: 2 | 3 | 4 | 5, message: string, readonly reason = 'refused') {
    super(message)
  }
}

/**
 * The broker cannot store or route right now: Redis is unreachable in cluster mode.
 * An MQTT publish held past `redis.outageHoldMs` disconnects its client without an
 * ack (it sends again once reconnected); HTTP answers 503 with `Retry-After`.
 */
export class UnavailableError extends BrokerError {
  readonly code = 'BRK_UNAVAILABLE'
  override readonly statusCode = 503
}

/** A route received something it cannot use; answered with 4xx. */
export class BadRequestError extends BrokerError {
  readonly code = 'BRK_HTTP_BAD_REQUEST'
  override readonly statusCode = 400
}

/** The broker hit a fault it did not expect; the cause is kept in `cause`. */
export class InternalError extends BrokerError {
  readonly code = 'BRK_INTERNAL'
}

/**
 * Narrow anything thrown or rejected to a `BrokerError`: broker errors pass
 * through, other errors are wrapped with `{ cause }`, and a falsy rejection
 * (`Promise.reject()`) becomes an explicit error instead of vanishing.
 */
export function toBrokerError (raw: unknown): BrokerError {
  if (raw instanceof BrokerError) return raw
  if (raw instanceof Error) return new InternalError(raw.message, { cause: raw })
  return new InternalError(`a hook failed with a non-error value: ${String(raw)}`, { cause: raw })
}

/** The message of anything thrown, for wrapping lower errors in our own. */
export function messageOf (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
