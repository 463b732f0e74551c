import { BrokenCircuitError, CircuitState, ConsecutiveBreaker, circuitBreaker, handleWhenResult, type CircuitBreakerPolicy } from 'cockatiel'
import { Agent, type buildConnector } from 'undici'
import { ConcurrencyLimit } from './concurrency.js'
import { StuckRequestError, closeWithin, settleWithin } from './bounded.js'
import { exchange, refusedBeforeSending, type AttemptResult } from './exchange.js'
import { headersProblem, type WebhookRequest } from './request.js'
import { backoffMs } from './retry.js'
import type { RetryPolicy, Subscription } from './subscriptions.js'
import { DeniedAddressError } from './url-policy.js'
import type { DeliveryRates } from './rate.js'
import type { TraceCarrier } from '../../src/core/index.js'

export { backoffMs, isRetryable, retryAfterMs } from './retry.js'
export type { AttemptResult } from './exchange.js'

/** One (event, subscription) to deliver. */
export interface Job {
  readonly subscription: Subscription
  /** Standard Webhooks `webhook-id`: the same on every attempt. */
  readonly id: string
  readonly eventId: string | undefined
  readonly topic: string
  /** The event's bytes as published. */
  readonly raw: Buffer
  readonly event: Record<string, unknown>
  /** Set when this delivery replays the dead letter with this id. */
  readonly replayOf?: string
  /** The value of the subscription's `ordering` attribute in the event: deliveries with the same key go one at a time, in order. */
  readonly orderingKey?: string
  /** When the broker accepted the event (ms since the epoch): its time-to-live counts from here. */
  readonly acceptedAt: number
  /** With tracing on, the event's `receive` span: each attempt's span is its child. */
  readonly trace?: TraceCarrier
  attempts: number
  lastStatus: number | undefined
  lastError: string | undefined
}

/** One attempt's span (tracing on): the W3C Trace Context headers its request carries, if any, and its end. */
export interface AttemptTrace {
  /** `traceparent` (and `tracestate`) naming the attempt's span, when the event carries a valid trace context; else none. */
  readonly headers: TraceCarrier | undefined
  readonly end: (result: AttemptResult) => void
}

/** Starts the span of each attempt that is sent (`tracing.ts`). */
export type DeliveryTracing = (job: Job) => AttemptTrace

/** How a delivery ended without being delivered: attempts ran out or a final answer, 410 Gone, or its time-to-live passed while failing. */
export type FailedEnd = 'failed' | 'gone' | 'expired'

export interface DeliveryOptions {
  readonly retry: RetryPolicy
  readonly timeoutMs: number
  /** A delivery still failing this long after its event was accepted is given up (`expired`). */
  readonly ttlMs: number
  /** Requests in flight per subscription at most: the bound of its adaptive limit. */
  readonly concurrency: number
  /** Where a subscription's adaptive limit starts. */
  readonly initialConcurrency: number
  /** An attempt answered slower than this counts as overload (the limit shrinks), as a 503 does. */
  readonly latencyTargetMs: number
  /** Deliveries waiting (queued or between attempts) at most; beyond it `enqueue` refuses. */
  readonly maxQueued: number
  /** Consecutive failed attempts (network, timeout, 408, 429, 5xx) that open a subscription's circuit. */
  readonly breakerFailures: number
  /** How long an open circuit holds deliveries before one probe may go, in ms. */
  readonly breakerHalfOpenAfterMs: number
  /** Opens every connection of a delivery: the URL policy's, which refuses denied addresses (`UrlPolicy.connector`). */
  readonly connect: buildConnector.connector
  /** Each subscription's `WebHook-Allowed-Rate`: a delivery past it is held, not tried. */
  readonly rates?: DeliveryRates
  /** The subscription as this node knows it now (a job holds it as it was when queued): one disabled since (410 Gone) gets nothing more, one removed is an orphan. */
  readonly current: (subscriptionId: string) => Subscription | undefined
  /** The request of an attempt; `trace`: the W3C Trace Context headers it carries (tracing on), else the event's own are forwarded. */
  readonly build: (job: Job, now: Date, trace: TraceCarrier | undefined) => WebhookRequest
  /** With tracing on: each attempt sent is a span. */
  readonly tracing?: DeliveryTracing
  readonly onDelivered: (job: Job, latencyMs: number) => void
  /** Attempts ran out, the endpoint refused for good (`gone`: 410), its address is denied, its request could not be made, or its time-to-live passed (`expired`). */
  readonly onFailed: (job: Job, end: FailedEnd) => void
  /** A throw past the end of a delivery (from `onDelivered` or `onFailed`): reported, the delivery is over. */
  readonly onError: (err: unknown, context: Readonly<Record<string, unknown>>) => void
}

/** A subscription's circuit, as `GET /api/webhooks` and the metrics show it. */
export type BreakerState = 'closed' | 'open' | 'half-open'


/**
 * What to do with a job after `Deliverer.attempt`: it ended (delivered or failed for
 * good), goes again later (it was tried), or is held by its open circuit (not tried).
 */
export type NextStep =
  | { readonly kind: 'done' }
  | { readonly kind: 'later' | 'held', readonly delayMs: number }

/** Where deliveries wait: in this process, or in Redis shared by every node. */
export interface DeliveryQueueLike {
  /** Queue a job; `false` when the queue cannot take it (the caller dead-letters it). */
  enqueue: (job: Job) => boolean
  /**
   * The jobs queued this turn are written to Redis (one round trip for the turn's jobs):
   * settles once they are. `undefined` when nothing is on its way (a memory queue).
   */
  written: () => Promise<void> | undefined
  /** Deliveries queued or waiting for a retry. */
  depth: () => number
  /** Those of one subscription. */
  depthOf: (subscriptionId: string) => number
  breakerState: (subscriptionId: string) => BreakerState
  /** Requests the subscription may have in flight now (its adaptive limit, on this node). */
  concurrencyOf: (subscriptionId: string) => number
  /** Drop what still waits for a removed subscription (a durable queue shared by the nodes does; a memory one lets it run out). */
  forget?: (subscriptionId: string) => Promise<void>
  close: () => Promise<void>
}

/** A subscription's own connection pool: an undici Agent bounded at `concurrency` connections. */
interface SubscriptionPool {
  readonly agent: Agent
  inFlight: number
  /** When its last request ended (`performance.now()`). */
  idleSince: number
  /** The longest `timeoutMs` of its requests: how long closing it may wait for them. */
  timeoutMs: number
}

/** After its deadline, how long a request may take to come back aborted before it is taken for stuck in undici. */
const STUCK_GRACE_MS = 1000
/** A pool of a subscription with nothing in flight for this long is closed (a removed subscription leaves none behind). */
const IDLE_POOL_MS = 60_000

/**
 * One attempt at a time: sends a job through its subscription's own undici Agent (a
 * keep-alive pool of at most `concurrency` connections) and circuit breaker
 * (cockatiel), and says what comes next. The queues decide when attempts run; this
 * decides what they do.
 *
 * One pool per subscription, not one per origin: with undici 7 (7.30.2 checked, and
 * 8.x has the same code) a request undici refuses before sending (an invalid header
 * value, say) leaves the pool connection it was given marked busy for good
 * (`PoolBase[kDispatch]` sets `kNeedDrain` when `dispatch` returns false after the
 * refusal, and that client never drains). After `connections` refusals every later
 * request to the origin waits in the pool's queue forever, and its AbortSignal does not
 * end it (undici only records the abort until the request reaches a connection). So:
 * headers are checked before undici sees them and such errors fail the delivery at once;
 * a pool that refused a request anyway, or kept one past its deadline, is retired
 * (closed, destroyed if closing takes longer than its timeout) and the next request gets a
 * new one; and every request is bounded by its own deadline whatever undici does with it.
 */
export class Deliverer {
  readonly #options: DeliveryOptions
  readonly #pools = new Map<string, SubscriptionPool>()
  /** Pools being closed: awaited by `close`. */
  readonly #retiring = new Set<Promise<void>>()
  readonly #sweeper: NodeJS.Timeout
  /** One circuit breaker per subscription: its endpoint's health. */
  readonly #breakers = new Map<string, CircuitBreakerPolicy>()
  /** When each subscription's circuit last opened. */
  readonly #openedAt = new Map<string, number>()
  /** Each subscription's adaptive concurrency limit. */
  readonly #limits = new Map<string, ConcurrencyLimit>()
  #closed = false

  constructor (options: DeliveryOptions) {
    this.#options = options
    this.#sweeper = setInterval(() => { this.#closeIdlePools() }, IDLE_POOL_MS)
    this.#sweeper.unref()
  }

  /** The circuit of a subscription; `closed` until it has failed. */
  breakerState (subscriptionId: string): BreakerState {
    const state = this.#breakers.get(subscriptionId)?.state
    return state === CircuitState.Open || state === CircuitState.Isolated ? 'open' : state === CircuitState.HalfOpen ? 'half-open' : 'closed'
  }

  /** Requests a subscription may have in flight now: its adaptive limit, at most `concurrency`. */
  concurrency (subscriptionId: string): number {
    return this.#limit(subscriptionId).current
  }

  #limit (subscriptionId: string): ConcurrencyLimit {
    let limit = this.#limits.get(subscriptionId)
    if (limit === undefined) {
      limit = new ConcurrencyLimit({ max: this.#options.concurrency, initial: this.#options.initialConcurrency, latencyTargetMs: this.#options.latencyTargetMs })
      this.#limits.set(subscriptionId, limit)
    }
    return limit
  }

  /** How long an open circuit, or the endpoint's allowed rate, still holds a subscription's deliveries: 0 once one may go. */
  holdMs (subscriptionId: string): number {
    const rateMs = this.#options.rates?.holdMs(subscriptionId) ?? 0
    const openedAt = this.#openedAt.get(subscriptionId)
    if (openedAt === undefined || this.breakerState(subscriptionId) !== 'open') return rateMs
    return Math.max(rateMs, openedAt + this.#options.breakerHalfOpenAfterMs - Date.now())
  }

  /**
   * Try `job` once (unless its circuit holds it), counting the attempt and noting its
   * status. Calls `onDelivered` or `onFailed` when the job ends; otherwise says when
   * to try again: its backoff, `Retry-After` (up to the cap), or the circuit's hold.
   * A throw while building or sending the request ends the job as failed; it rejects
   * only when `onDelivered` or `onFailed` throws.
   */
  async attempt (job: Job): Promise<NextStep> {
    // past the endpoint's WebHook-Allowed-Rate: held, not tried (a queue that asks holdMs first never gets here)
    const rateMs = this.#options.rates?.take(job.subscription) ?? 0
    if (rateMs > 0) return { kind: 'held', delayMs: rateMs }
    let result: AttemptResult
    const started = performance.now()
    try {
      // attempts whose result is `retry` count against the endpoint's circuit; 4xx answers do not
      result = await this.#breaker(job.subscription.id).execute(async () => {
        job.attempts++
        return await this.#send(job)
      })
    } catch (err: unknown) {
      if (err instanceof BrokenCircuitError) {
        // the circuit is open (or its one probe is out): the endpoint is failing; hold the delivery, at most until it expires
        const left = this.#timeLeft(job)
        if (left <= 0) return this.#end(job, 'expired')
        return { kind: 'held', delayMs: Math.min(left, Math.max(this.holdMs(job.subscription.id), Math.min(this.#options.breakerHalfOpenAfterMs, 1000))) }
      }
      // #send turns every throw of building or sending into a result; one from around it still ends the delivery, as a failure
      result = { kind: 'failed', status: undefined, error: describe(err), gone: false }
    }
    job.lastStatus = result.status
    this.#limit(job.subscription.id).sample(performance.now() - started, result.kind === 'retry', (this.#pools.get(job.subscription.id)?.inFlight ?? 0) + 1)
    if (result.kind === 'delivered') {
      this.#options.onDelivered(job, performance.now() - started)
      return DONE
    }
    job.lastError = result.error
    if (result.kind === 'failed') return this.#end(job, result.gone ? 'gone' : 'failed')
    const policy = { ...this.#options.retry, ...job.subscription.retry }
    if (job.attempts >= policy.maxAttempts || this.#closed) return this.#end(job, 'failed')
    const left = this.#timeLeft(job)
    if (left <= 0) return this.#end(job, 'expired')
    // the last attempt goes when the time-to-live ends, not after it
    return { kind: 'later', delayMs: Math.min(left, result.retryAfterMs === undefined ? backoffMs(policy, job.attempts) : Math.min(result.retryAfterMs, policy.maxDelayMs)) }
  }

  /** Milliseconds left of `job`'s time-to-live. */
  #timeLeft (job: Job): number {
    return job.acceptedAt + this.#options.ttlMs - Date.now()
  }

  #end (job: Job, end: FailedEnd): NextStep {
    this.#options.onFailed(job, end)
    return DONE
  }

  /** Close every pool; a request still out after its timeout is destroyed, so this ends. */
  async close (): Promise<void> {
    this.#closed = true
    clearInterval(this.#sweeper)
    for (const [id, pool] of this.#pools) this.#retire(id, pool)
    while (this.#retiring.size > 0) await Promise.all(this.#retiring)
  }

  #breaker (subscriptionId: string): CircuitBreakerPolicy {
    let breaker = this.#breakers.get(subscriptionId)
    if (breaker === undefined) {
      breaker = circuitBreaker(handleWhenResult((result) => isAttemptResult(result) && result.kind === 'retry'), {
        halfOpenAfter: this.#options.breakerHalfOpenAfterMs,
        breaker: new ConsecutiveBreaker(this.#options.breakerFailures)
      })
      breaker.onBreak(() => { this.#openedAt.set(subscriptionId, Date.now()) })
      this.#breakers.set(subscriptionId, breaker)
    }
    return breaker
  }

  /** The subscription's pool, made on first use and again after it was retired. */
  #pool (subscriptionId: string, timeoutMs: number): SubscriptionPool {
    let pool = this.#pools.get(subscriptionId)
    if (pool === undefined) {
      pool = {
        agent: new Agent({ connections: this.#options.concurrency, keepAliveTimeout: 30_000, connect: this.#options.connect }),
        inFlight: 0,
        idleSince: performance.now(),
        timeoutMs
      }
      this.#pools.set(subscriptionId, pool)
    }
    pool.timeoutMs = Math.max(pool.timeoutMs, timeoutMs)
    return pool
  }

  /**
   * Stop giving `pool` new requests and close it: requests already on it finish (each is
   * bounded by its deadline); if it is not closed by then, it is destroyed.
   */
  #retire (subscriptionId: string, pool: SubscriptionPool): void {
    if (this.#pools.get(subscriptionId) === pool) this.#pools.delete(subscriptionId)
    const closing = closeWithin(pool.agent, pool.timeoutMs + STUCK_GRACE_MS).then(() => undefined, (err: unknown) => {
      this.#options.onError(err, { op: 'close webhook pool', subscription: subscriptionId })
    })
    this.#retiring.add(closing)
    void closing.finally(() => { this.#retiring.delete(closing) })
  }

  #closeIdlePools (): void {
    const now = performance.now()
    for (const [id, pool] of this.#pools) {
      if (pool.inFlight === 0 && now - pool.idleSince > IDLE_POOL_MS) this.#retire(id, pool)
    }
  }

  /** Send one attempt, as a span of its own when tracing is on. */
  async #send (job: Job): Promise<AttemptResult> {
    const tracing = this.#options.tracing
    if (tracing === undefined) return await this.#sendOnce(job, undefined)
    const trace = tracing(job)
    let result: AttemptResult
    try {
      result = await this.#sendOnce(job, trace.headers)
    } catch (err: unknown) {
      trace.end({ kind: 'failed', status: undefined, error: describe(err), gone: false })
      throw err
    }
    trace.end(result)
    return result
  }

  async #sendOnce (job: Job, trace: TraceCarrier | undefined): Promise<AttemptResult> {
    let built: WebhookRequest
    try {
      built = this.#options.build(job, new Date(), trace)
    } catch (err: unknown) {
      // the event was accepted but cannot be sent in this subscription's mode: it never will be, so no retry
      return { kind: 'failed', status: undefined, error: `the request could not be built: ${describe(err)}`, gone: false }
    }
    const problem = headersProblem(built.headers)
    if (problem !== undefined) return { kind: 'failed', status: undefined, error: `the request could not be made: ${problem}`, gone: false }
    // closing: no new pool that nothing would close (attempt() ends the delivery, as after any retry once closed)
    if (this.#closed) return { kind: 'retry', status: undefined, error: 'webhooks are closing: not sent', retryAfterMs: undefined }
    const subscriptionId = job.subscription.id
    const timeoutMs = job.subscription.timeoutMs ?? this.#options.timeoutMs
    const pool = this.#pool(subscriptionId, timeoutMs)
    const deadline = AbortSignal.timeout(timeoutMs)
    pool.inFlight++
    try {
      return await settleWithin(exchange(pool.agent, job.subscription.webhook_url, built, timeoutMs, deadline), deadline, STUCK_GRACE_MS)
    } catch (err: unknown) {
      // the connector refused the address: asking again would meet the same answer, or a worse one
      if (err instanceof DeniedAddressError) return { kind: 'failed', status: undefined, error: err.message, gone: false }
      if (err instanceof StuckRequestError) {
        // undici kept the request past its deadline: its pool may be wedged, the next request gets a new one
        this.#retire(subscriptionId, pool)
        return { kind: 'retry', status: undefined, error: `no answer within ${timeoutMs} ms (the request was still waiting for a connection)`, retryAfterMs: undefined }
      }
      if (refusedBeforeSending(err)) {
        // undici refused it before sending, and keeps a connection slot taken for it: a new pool for the next request
        this.#retire(subscriptionId, pool)
        return { kind: 'failed', status: undefined, error: `the request could not be made: ${describe(err)}`, gone: false }
      }
      const error = deadline.aborted ? `no answer within ${timeoutMs} ms` : err instanceof Error ? err.message : String(err)
      return { kind: 'retry', status: undefined, error, retryAfterMs: undefined }
    } finally {
      pool.inFlight--
      pool.idleSince = performance.now()
    }
  }
}

const DONE: NextStep = { kind: 'done' }

function describe (err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err)
}

function isAttemptResult (value: unknown): value is AttemptResult {
  return typeof value === 'object' && value !== null && 'kind' in value
}
