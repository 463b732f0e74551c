import { EventRejectedError, PublishUnansweredError } from '../errors.js'
import type { CloudEventJson } from '../event.js'
import type { Publisher } from '../publisher.js'
import { DEFAULT_LIMITS, toEvent, type ExtractLimits, type Problem } from './extract.js'

/** What the interceptor needs of a publisher (`createPublisher()` gives it). */
export type GatewayPublisher = Pick<Publisher, 'publishEvent' | 'source' | 'dataschemas'>

/** A pino-like logger: pino, fastify's `app.log`, or anything with these two. */
export interface GatewayLogger {
  warn: (fields: Record<string, unknown>, message: string) => void
  error: (fields: Record<string, unknown>, message: string) => void
}

/** What happened to one event (or entry) a backend returned. */
export type GatewayOutcome =
  /** the broker accepted it */
  | 'published'
  /** the broker had accepted the same source and id before */
  | 'duplicates'
  /** the broker refused it (schema, envelope, ACL): the backend's bug; the broker dead-lettered it */
  | 'rejected'
  /** no answer from the broker (or not sent): handed to the fallback when there is one */
  | 'failed'
  /** a failed event the fallback took */
  | 'fellBack'
  /** a failed event the fallback threw on: lost */
  | 'fallbackFailed'
  /** an entry that is no event (no object, no string `type`), or a header that is no JSON array */
  | 'malformed'
  /** entries past `maxEvents` in one response */
  | 'dropped'
  /** a header or body past its size bound, not parsed */
  | 'oversized'

/** The counters since the interceptor was created, and the publishes under way now. */
export type GatewayStats = { readonly [O in GatewayOutcome]: number } & {
  /** Publishes (and fallbacks) under way. */
  readonly inFlight: number
}

/** One outcome, as `onOutcome` hears of it. */
export interface GatewayOutcomeReport {
  readonly outcome: GatewayOutcome
  /** 1, or how many entries were dropped past `maxEvents`. */
  readonly count: number
  readonly event?: CloudEventJson
  readonly error?: Error
  /** Why an entry was malformed, a header or body oversized, entries dropped. */
  readonly detail?: string
}

export interface GatewayOptions extends Partial<ExtractLimits> {
  readonly publisher: GatewayPublisher
  /**
   * Called with each event the broker did not answer (an outbox insert, say); awaited,
   * and a throw counts the event `fallbackFailed`. Never called for a refused event:
   * publishing it again would be refused again.
   */
  readonly fallback?: (event: CloudEventJson, error: Error) => unknown
  /** Called with every outcome, for the application's metrics (prom-client counters). */
  readonly onOutcome?: (report: GatewayOutcomeReport) => void
  /** Where failures are logged, sampled (fastify's plugin defaults to `app.log`). */
  readonly log?: GatewayLogger
  /** Events one response may carry; the rest are dropped and counted (default 100). */
  readonly maxEvents?: number
  /** Publishes under way at once; past it, events go straight to the fallback (default 1000). */
  readonly maxInFlight?: number
  /** Read the body's `events` beside `data` (default true); false: the header only. */
  readonly body?: boolean
  /** At most one log line per outcome per this many ms, the next saying how many were left out (default 10 000; 0: every line). */
  readonly logIntervalMs?: number
}

/** What an application reads of an interceptor. */
export interface GatewayEvents {
  stats: () => GatewayStats
  /** Resolves once every publish under way (and its fallback) has an outcome: before closing the publisher. */
  settled: () => Promise<void>
}

const OUTCOMES: readonly GatewayOutcome[] = ['published', 'duplicates', 'rejected', 'failed', 'fellBack', 'fallbackFailed', 'malformed', 'dropped', 'oversized']

/** The shared part of the fastify plugin and the express middleware: publish, count, fall back, log. */
export class Relay implements GatewayEvents {
  readonly limits: ExtractLimits
  /** Whether to read bodies. */
  readonly body: boolean
  readonly #publisher: GatewayPublisher
  readonly #fallback: GatewayOptions['fallback']
  readonly #onOutcome: GatewayOptions['onOutcome']
  readonly #log: GatewayLogger | undefined
  readonly #maxEvents: number
  readonly #maxInFlight: number
  readonly #sampler: Sampler
  readonly #counts = Object.fromEntries(OUTCOMES.map((o) => [o, 0])) as Record<GatewayOutcome, number>
  readonly #underWay = new Set<Promise<void>>()
  #inFlight = 0

  /** Options are checked here, so a wrong one fails at `register`/`gatewayMiddleware()`, not at the first response. */
  constructor (options: GatewayOptions, defaultLog?: GatewayLogger) {
    const publisher: Partial<GatewayPublisher> | undefined = options.publisher
    if (typeof publisher?.publishEvent !== 'function' || typeof publisher.source !== 'string') {
      throw new TypeError('gateway interceptor: "publisher" must be a publisher from createPublisher()')
    }
    this.#publisher = options.publisher
    this.#fallback = options.fallback
    this.#onOutcome = options.onOutcome
    this.#log = options.log ?? defaultLog
    this.#maxEvents = bound(options, 'maxEvents', 100)
    this.#maxInFlight = bound(options, 'maxInFlight', 1000)
    this.limits = { maxHeaderBytes: bound(options, 'maxHeaderBytes', DEFAULT_LIMITS.maxHeaderBytes), maxBodyBytes: bound(options, 'maxBodyBytes', DEFAULT_LIMITS.maxBodyBytes) }
    this.body = options.body ?? true
    this.#sampler = new Sampler(options.logIntervalMs ?? 10_000)
  }

  /**
   * Publish a response's entries (the header's first), alongside the response: nothing
   * here waits. Partial events are built now, in the caller's async context, so they
   * carry the request's span as their traceparent.
   */
  take (entries: readonly unknown[], problems: readonly Problem[]): void {
    for (const problem of problems) this.#record({ outcome: problem.outcome, count: 1, detail: problem.detail }, 'warn', `gateway interceptor: ${problem.outcome} response skipped`)
    const kept = entries.length > this.#maxEvents ? entries.slice(0, this.#maxEvents) : entries
    if (kept.length < entries.length) {
      this.#record({ outcome: 'dropped', count: entries.length - kept.length, detail: `${entries.length} events in one response, maxEvents is ${this.#maxEvents}` }, 'warn', 'gateway interceptor: events past maxEvents dropped')
    }
    for (const entry of kept) {
      const event = toEvent(entry, this.#publisher.source, this.#publisher.dataschemas)
      if (typeof event === 'string') this.#record({ outcome: 'malformed', count: 1, detail: event }, 'warn', 'gateway interceptor: malformed event entry skipped')
      else this.#publish(event)
    }
  }

  readonly stats = (): GatewayStats => ({ ...this.#counts, inFlight: this.#inFlight })

  readonly settled = async (): Promise<void> => {
    while (this.#underWay.size > 0) await Promise.all([...this.#underWay])
  }

  #publish (event: CloudEventJson): void {
    let answer: Promise<{ duplicate: boolean }>
    if (this.#inFlight >= this.#maxInFlight) {
      answer = Promise.reject(new PublishUnansweredError(event.id, `not sent: ${this.#inFlight} publishes under way, maxInFlight is ${this.#maxInFlight}`))
    } else {
      try {
        answer = this.#publisher.publishEvent(event)
      } catch (err) {
        answer = Promise.reject(err)
      }
    }
    this.#inFlight++
    const settledOne = (): void => {
      this.#inFlight--
      this.#underWay.delete(done)
    }
    const done = answer.then(
      (published) => { this.#record({ outcome: published.duplicate ? 'duplicates' : 'published', count: 1, event }) },
      async (err: unknown) => { await this.#failed(event, err) }
    ).then(settledOne, settledOne)
    this.#underWay.add(done)
  }

  async #failed (event: CloudEventJson, raw: unknown): Promise<void> {
    const error = toError(raw)
    if (error instanceof EventRejectedError) {
      this.#record({ outcome: 'rejected', count: 1, event, error }, 'warn', 'gateway interceptor: the broker refused an event the backend returned (dead-lettered by the broker, not fallen back)')
      return
    }
    this.#record({ outcome: 'failed', count: 1, event, error })
    if (this.#fallback === undefined) {
      this.#write('error', 'lost', { outcome: 'failed', eventId: event.id, type: event.type, err: error }, 'gateway interceptor: the broker did not answer and there is no fallback: event lost')
      return
    }
    try {
      await this.#fallback(event, error)
      this.#record({ outcome: 'fellBack', count: 1, event, error }, 'warn', 'gateway interceptor: the broker did not answer: event handed to the fallback')
    } catch (err) {
      this.#record({ outcome: 'fallbackFailed', count: 1, event, error: toError(err) }, 'error', 'gateway interceptor: the broker did not answer and the fallback failed: event lost')
    }
  }

  /** Count an outcome, tell `onOutcome`, and log it (sampled) when a level is given. */
  #record (report: GatewayOutcomeReport, level?: 'warn' | 'error', message?: string): void {
    this.#counts[report.outcome] += report.count
    if (this.#onOutcome !== undefined) {
      // the application's callback must not turn a counted outcome into a failed response
      try { this.#onOutcome(report) } catch (err) { this.#write('error', 'onOutcome', { err }, 'gateway interceptor: onOutcome threw') }
    }
    if (level === undefined || message === undefined) return
    const { event, error, detail, count } = report
    this.#write(level, report.outcome, {
      outcome: report.outcome,
      ...(event === undefined ? {} : { eventId: event.id, type: event.type }),
      ...(count === 1 ? {} : { count }),
      ...(detail === undefined ? {} : { detail }),
      ...(error === undefined ? {} : { err: error })
    }, message)
  }

  #write (level: 'warn' | 'error', key: string, fields: Record<string, unknown>, message: string): void {
    if (this.#log === undefined) return
    const suppressed = this.#sampler.take(`${level}:${key}`)
    if (suppressed === undefined) return
    try {
      this.#log[level](suppressed === 0 ? fields : { ...fields, suppressed }, message)
    } catch { /* a logger that throws must not fail the response either */ }
  }
}

function toError (raw: unknown): Error {
  return raw instanceof Error ? raw : new Error(String(raw))
}

function bound (options: GatewayOptions, key: 'maxEvents' | 'maxInFlight' | 'maxHeaderBytes' | 'maxBodyBytes', fallback: number): number {
  const value = options[key] ?? fallback
  if (!Number.isSafeInteger(value) || value < 1) throw new TypeError(`gateway interceptor: "${key}" must be a positive integer, got ${String(value)}`)
  return value
}

/** At most one line per key per interval; the next says how many were left out. No client of the gateway may flood its log. */
class Sampler {
  readonly #intervalMs: number
  readonly #slots = new Map<string, { at: number, suppressed: number }>()

  constructor (intervalMs: number) {
    if (!Number.isSafeInteger(intervalMs) || intervalMs < 0) throw new TypeError(`gateway interceptor: "logIntervalMs" must be a non-negative integer, got ${String(intervalMs)}`)
    this.#intervalMs = intervalMs
  }

  /** The lines suppressed since the last written, when this one may be written; undefined when not. */
  take (key: string, now = Date.now()): number | undefined {
    if (this.#intervalMs === 0) return 0
    const slot = this.#slots.get(key)
    if (slot === undefined) {
      this.#slots.set(key, { at: now, suppressed: 0 })
      return 0
    }
    if (now - slot.at < this.#intervalMs) {
      slot.suppressed++
      return undefined
    }
    const suppressed = slot.suppressed
    slot.at = now
    slot.suppressed = 0
    return suppressed
  }
}
