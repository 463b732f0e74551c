/**
 * The base of ce-broker's errors: `BrokerError`, the registry of codes and the
 * fallback `InternalError`. An error carries what it is (`code`, `reason`) and what
 * MQTT does with a publish it refuses (`disposition`, `deadLetter`, `toldToPublisher`);
 * how HTTP answers it is the HTTP layer's table (`src/core/http/errors.ts`).
 */

/**
 * What the publish pipeline does with a publish that a hook refused:
 * - `reject`: the publisher is disconnected (MQTT 3.1.1 has no negative ack);
 * - `dead-letter`: diverted to `$DLQ/<topic>`, the publisher is acked and stays connected;
 * - `discard`: diverted to `$DISCARD/<topic>`, which nobody can subscribe to.
 */
export type Disposition = 'reject' | 'dead-letter' | 'discard'

const meanings = new Map<string, string>()

/**
 * Every code ce-broker defines, with its one-line meaning, in the order they are
 * defined. The README's `### Error codes` table lists the same codes with the same
 * meanings (a test holds them equal). Complete once `src/core/errors.ts` is loaded.
 */
export const ERROR_CODES: ReadonlyMap<string, string> = meanings

/**
 * Define a code and what it means (the README's "raised when"). Each error class
 * takes its `code` from here, so a code cannot be added without its meaning.
 */
export function errorCode<C extends `BRK_${string}`> (code: C, meaning: string): C {
  if (meanings.has(code)) throw new Error(`error code ${code} is defined twice`)
  meanings.set(code, meaning)
  return code
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
  /** The `tracestate` of the distributed-tracing extension, as published. */
  readonly tracestate?: unknown
  /**
   * What is wrong with the event's `traceparent` or `tracestate`, when something is
   * (`malformed traceparent: trace-id is all zeros`): the event is delivered as it is,
   * its trace context goes no further, and its audit record says so.
   */
  readonly traceProblem?: string
  /** The version of its type's schema it was checked against. */
  readonly schemaVersion?: number
  /** Its type's schema is in shadow mode and refused it: delivered anyway, audited `would_reject`. */
  readonly shadow?: { readonly reason: string, readonly problems: ReadonlyArray<{ readonly path: string, readonly message: string }> }
}

/** The refused publish a refusal's log line is about. */
export interface RefusedPublish {
  readonly topic: string
  readonly origin: string
}

/** How the publish pipeline logs a refusal: the error knows what matters about itself. */
export interface RefusalLog {
  readonly fields: Readonly<Record<string, unknown>>
  /** The line's message; without one the pipeline says `publish refused` or `publish diverted`. */
  readonly msg?: string
  readonly level: 'warn' | 'info'
  /**
   * Whether the line is sampled per client (`limits.clientLogIntervalMs`): a line a
   * client can trigger is; one the broker's own work causes is always written.
   */
  readonly sampled: boolean
  /** When set, a debug line with these fields and the refused payload follows (never at warn: payloads hold data). */
  readonly payloadLine?: Readonly<Record<string, unknown>>
}

/** Base class of every error ce-broker raises on purpose. */
export abstract class BrokerError extends Error {
  /** Stable machine-readable code, `BRK_<AREA>_<PROBLEM>`. */
  abstract readonly code: `BRK_${string}`
  /** What the publish pipeline does when a hook throws this error. */
  readonly disposition: Disposition = 'reject'
  /**
   * Why, in the one taxonomy of reason codes: the product's reason (`invalid_json`,
   * `not_authorized`, `duplicate`, `delivery_failed`, ...) when the class has one,
   * else its own default, else its `code`. Metrics, dead-letter records, the audit and
   * the HTTP table read it. A subclass with a reason declares it as a field.
   */
  declare readonly reason: string
  /** What is known of the refused event (what validation read), when the refusal is about one. */
  declare readonly event?: EventSummary

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

  /**
   * The log line of a publish refused with this error: its code, reason (when it has
   * its own) and message, sampled per client. Errors that know more say more.
   */
  refusalLog (publish: RefusedPublish): RefusalLog {
    return {
      level: 'warn',
      sampled: true,
      fields: { code: this.code, ...(this.reason === this.code ? {} : { reason: this.reason }), topic: publish.topic, detail: this.message }
    }
  }
}

// The default reason is the code. `code` is a field of the subclass, set after
// BrokerError's constructor has run, so it is read when asked: an accessor on the
// prototype, which a subclass's own `reason` field shadows (and which stays out of
// the error's own properties, so logs show what they showed before).
Object.defineProperty(BrokerError.prototype, 'reason', {
  get (this: BrokerError): string {
    return this.code
  },
  // a subclass compiled without define semantics for fields assigns its `reason`
  // instead of defining it: make that an own property as the field would have been
  set (this: BrokerError, value: string): void {
    Object.defineProperty(this, 'reason', { value, writable: true, enumerable: true, configurable: true })
  },
  configurable: true
})

const INTERNAL = errorCode('BRK_INTERNAL', 'something failed that was not expected; the original error is in `cause`')

/** The broker hit a fault it did not expect; the cause is kept in `cause`. */
export class InternalError extends BrokerError {
  readonly code = INTERNAL
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
