/** Errors that refuse a publish, and the reason codes of a refused event. */
import { BrokerError, errorCode, type Disposition, type EventSummary, type RefusalLog, type RefusedPublish } from './base.js'

/** Why an event was refused: the reason codes of PRODUCT §2, the README's reason table. */
export const REJECT_REASONS = [
  'payload_too_large', 'invalid_json', 'invalid_cloudevent', 'type_topic_mismatch',
  'unknown_type', 'schema_validation_failed', 'no_matching_rule'
] as const

export type RejectReason = typeof REJECT_REASONS[number]

/** One problem in an event: a JSON pointer into the event and what is wrong there. */
export interface EventProblem {
  readonly path: string
  readonly message: string
}

const EVENT_REJECTED = errorCode('BRK_EVENT_REJECTED', 'the pipeline refused an event; `reason` holds the code of the reason table, `problems` the details')

/**
 * An event the pipeline refused. `reason` is the PRODUCT §2 code; `problems` say
 * where and why. It is always dead-lettered: `onInvalid: "dlq"` acks the publisher,
 * `"disconnect"` drops it.
 */
export class EventRejectedError extends BrokerError {
  readonly code = EVENT_REJECTED
  override readonly disposition: Disposition

  constructor (
    override readonly reason: RejectReason,
    readonly topic: string,
    readonly problems: readonly EventProblem[],
    onInvalid: 'dlq' | 'disconnect',
    override readonly event: EventSummary = {}
  ) {
    const first = problems[0]
    super(`event on "${topic}" rejected: ${reason}${first === undefined ? '' : ` (${first.path === '' ? '' : `${first.path} `}${first.message})`}`)
    this.disposition = onInvalid === 'disconnect' ? 'reject' : 'dead-letter'
  }

  override get deadLetter (): boolean {
    return true
  }

  /**
   * With the event id and the extension values that tie a business flow together
   * (correlationid, causationid, traceparent), so one flow can be followed across
   * services; the payload only at debug.
   */
  override refusalLog (publish: RefusedPublish): RefusalLog {
    const { event } = this
    return {
      level: 'warn',
      sampled: true,
      fields: {
        reason: this.reason,
        eventId: event.id,
        type: event.type,
        correlationid: event.correlationid,
        causationid: event.causationid,
        traceparent: event.traceparent,
        errors: this.problems,
        origin: publish.origin
      },
      payloadLine: { reason: this.reason, eventId: event.id }
    }
  }
}

const EVENT_DUPLICATE = errorCode('BRK_EVENT_DUPLICATE', 'an event with the `source` and `id` of one accepted within the idempotency window; acked, delivered to no one, told on `$rejections/<clientId>` (reason `duplicate`)')

/**
 * The same event (`source` + `id`) was accepted already within the idempotency
 * window. The publisher is acked as usual; the copy reaches no one and is not
 * dead-lettered (nothing to replay), but an MQTT publisher is told on
 * `$rejections/<clientId>` with reason `duplicate` (PRODUCT §3), so a second run of
 * the same publish is not silent. HTTP answers 200 `{ "duplicate": true }`.
 */
export class DuplicateEventError extends BrokerError {
  readonly code = EVENT_DUPLICATE
  override readonly disposition = 'discard'
  /** The reason of the record told on `$rejections`. */
  override readonly reason = 'duplicate'

  constructor (readonly topic: string, override readonly event: { readonly id: string, readonly source: string }) {
    super(`event ${JSON.stringify(event.id)} from ${JSON.stringify(event.source)} on "${topic}" is a duplicate`)
  }

  override get deadLetter (): boolean {
    return false
  }

  override get toldToPublisher (): boolean {
    return true
  }

  /** A publisher retrying is routine, not a warning: info, in a slot of its own; MQTT publishers are told on `$rejections`. */
  override refusalLog (publish: RefusedPublish): RefusalLog {
    return {
      level: 'info',
      sampled: true,
      msg: 'duplicate event dropped',
      fields: { reason: this.reason, eventId: this.event.id, source: this.event.source, topic: publish.topic, origin: publish.origin }
    }
  }
}

const TOPIC_RESERVED = errorCode('BRK_TOPIC_RESERVED', 'a publish to a `$` topic: acked, delivered to no one, told on `$rejections` as `not_authorized`')

/** A client tried to publish to a reserved `$` topic (`$SYS/`, `$DLQ/`, `$audit/`, ...). */
export class ReservedTopicError extends BrokerError {
  readonly code = TOPIC_RESERVED
  /** Acked and delivered to no one, as Mosquitto and the Paho interoperability tests expect: the client stays connected. */
  override readonly disposition = 'discard'
  /** Told on `$rejections` and counted like any publish the ACL refuses. */
  override readonly reason = 'not_authorized'
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

const LIMIT_EXCEEDED = errorCode('BRK_LIMIT_EXCEEDED', 'a publish\'s topic is over `limits.maxTopicBytes` or `limits.maxTopicLevels`: the client is disconnected, nothing is kept')

/**
 * A publish over a limit of `limits` that is checked after parsing (topic bytes). Like
 * a payload over the limit: the client is disconnected, nothing is kept.
 */
export class LimitExceededError extends BrokerError {
  readonly code = LIMIT_EXCEEDED
  constructor (readonly limit: string, message: string) {
    super(message)
  }

  /** The start of the topic only: it is over a limit, maybe a very long one. */
  override refusalLog (publish: RefusedPublish): RefusalLog {
    return {
      level: 'warn',
      sampled: true,
      msg: 'publish refused: over a limit, client disconnected',
      fields: { topicStart: publish.topic.slice(0, 64), code: this.code, detail: this.message }
    }
  }
}

const PUBLISH_NOT_AUTHORIZED = errorCode('BRK_PUBLISH_NOT_AUTHORIZED', 'no ACL rule grants the client the topic it publishes to: acked, delivered to no one, told on `$rejections/<clientId>` and audited as `not_authorized`')

/**
 * A publish that no ACL rule grants the client. The publisher is acked and stays
 * connected; the message reaches no one and is not dead-lettered (there is nothing
 * to replay), but it is told on `$rejections/<clientId>` and audited with reason
 * `not_authorized`.
 */
export class PublishNotAuthorizedError extends BrokerError {
  readonly code = PUBLISH_NOT_AUTHORIZED
  override readonly disposition = 'discard'
  override readonly reason = 'not_authorized'

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

const UNAVAILABLE = errorCode('BRK_UNAVAILABLE', 'Redis is unreachable in cluster mode: an MQTT publish held past `redis.outageHoldMs` disconnects its client without an ack; HTTP answers 503 with `Retry-After`')

/**
 * The broker cannot store or route right now: Redis is unreachable in cluster mode.
 * An MQTT publish held past `redis.outageHoldMs` disconnects its client without an
 * ack (it sends again once reconnected); HTTP answers 503 with `Retry-After`.
 */
export class UnavailableError extends BrokerError {
  readonly code = UNAVAILABLE
}
