import { BrokenCircuitError, CircuitState, ConsecutiveBreaker, circuitBreaker, handleWhenResult, type CircuitBreakerPolicy } from 'cockatiel'
import { Agent, request, type buildConnector } from 'undici'
import type { RetryPolicy, Subscription } from './subscriptions.js'
import type { WebhookRequest } from './request.js'
import { DeniedAddressError } from './url-policy.js'

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
  attempts: number
  lastStatus: number | undefined
  lastError: string | undefined
}

/** How an attempt ended. */
export type AttemptResult =
  | { readonly kind: 'delivered', readonly status: number }
  | { readonly kind: 'retry', readonly status: number | undefined, readonly error: string, readonly retryAfterMs: number | undefined }
  | { readonly kind: 'failed', readonly status: number | undefined, readonly error: string, readonly gone: boolean }

export interface DeliveryOptions {
  readonly retry: RetryPolicy
  readonly timeoutMs: number
  /** Requests in flight per subscription at most. */
  readonly concurrency: number
  /** Deliveries waiting (queued or between attempts) at most; beyond it `enqueue` refuses. */
  readonly maxQueued: number
  /** Consecutive failed attempts (network, timeout, 408, 429, 5xx) that open a subscription's circuit. */
  readonly breakerFailures: number
  /** How long an open circuit holds deliveries before one probe may go, in ms. */
  readonly breakerHalfOpenAfterMs: number
  /** Opens every connection of a delivery: the URL policy's, which refuses denied addresses (`UrlPolicy.connector`). */
  readonly connect: buildConnector.connector
  readonly build: (job: Job, now: Date) => WebhookRequest
  readonly onDelivered: (job: Job, latencyMs: number) => void
  /** Attempts ran out, the endpoint refused for good (`gone`: 410), its address is denied or its request could not be made. */
  readonly onFailed: (job: Job, gone: boolean) => void
  /** A throw past the end of a delivery (from `onDelivered` or `onFailed`): reported, the delivery is over. */
  readonly onError: (err: unknown, context: Readonly<Record<string, unknown>>) => void
}

/** Backoff before attempt `attempt + 1` (1-based `attempt` just failed): full jitter over an exponential cap. */
export function backoffMs (policy: RetryPolicy, attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** (attempt - 1))
  return Math.floor(random() * ceiling)
}

/** `Retry-After` as milliseconds (seconds or an HTTP date), or `undefined`. */
export function retryAfterMs (header: string | string[] | undefined, now = Date.now()): number | undefined {
  const value = Array.isArray(header) ? header[0] : header
  if (value === undefined || value.trim() === '') return undefined
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000
  const at = Date.parse(value)
  return Number.isNaN(at) ? undefined : Math.max(0, at - now)
}

/** A subscription's circuit, as `GET /api/webhooks` and the metrics show it. */
export type BreakerState = 'closed' | 'open' | 'half-open'

/** 408, 429 and 5xx are worth another attempt; other statuses are final. */
export function isRetryable (status: number): boolean {
  return status === 408 || status === 429 || status >= 500
}

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
  /** Deliveries queued or waiting for a retry. */
  depth: () => number
  /** Those of one subscription. */
  depthOf: (subscriptionId: string) => number
  breakerState: (subscriptionId: string) => BreakerState
  close: () => Promise<void>
}

/**
 * One attempt at a time: sends a job through one undici Agent (a keep-alive pool per
 * origin) and one circuit breaker (cockatiel) per subscription, and says what comes
 * next. The queues decide when attempts run; this decides what they do.
 */
export class Deliverer {
  readonly #options: DeliveryOptions
  readonly #agent: Agent
  /** One circuit breaker per subscription: its endpoint's health. */
  readonly #breakers = new Map<string, CircuitBreakerPolicy>()
  /** When each subscription's circuit last opened. */
  readonly #openedAt = new Map<string, number>()
  #closed = false

  constructor (options: DeliveryOptions) {
    this.#options = options
    this.#agent = new Agent({ connections: options.concurrency, keepAliveTimeout: 30_000, connect: options.connect })
  }

  /** The circuit of a subscription; `closed` until it has failed. */
  breakerState (subscriptionId: string): BreakerState {
    const state = this.#breakers.get(subscriptionId)?.state
    return state === CircuitState.Open || state === CircuitState.Isolated ? 'open' : state === CircuitState.HalfOpen ? 'half-open' : 'closed'
  }

  /** How long an open circuit still holds a subscription's deliveries: 0 once a probe may go. */
  holdMs (subscriptionId: string): number {
    const openedAt = this.#openedAt.get(subscriptionId)
    if (openedAt === undefined || this.breakerState(subscriptionId) !== 'open') return 0
    return Math.max(0, openedAt + this.#options.breakerHalfOpenAfterMs - Date.now())
  }

  /**
   * Try `job` once (unless its circuit holds it), counting the attempt and noting its
   * status. Calls `onDelivered` or `onFailed` when the job ends; otherwise says when
   * to try again: its backoff, `Retry-After` (up to the cap), or the circuit's hold.
   * A throw while building or sending the request ends the job as failed; it rejects
   * only when `onDelivered` or `onFailed` throws.
   */
  async attempt (job: Job): Promise<NextStep> {
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
        // the circuit is open (or its one probe is out): hold the delivery, it has not been tried
        return { kind: 'held', delayMs: Math.max(this.holdMs(job.subscription.id), Math.min(this.#options.breakerHalfOpenAfterMs, 1000)) }
      }
      // #send turns every throw of building or sending into a result; one from around it still ends the delivery, as a failure
      result = { kind: 'failed', status: undefined, error: describe(err), gone: false }
    }
    job.lastStatus = result.status
    if (result.kind === 'delivered') {
      this.#options.onDelivered(job, performance.now() - started)
      return DONE
    }
    if (result.kind === 'failed') {
      job.lastError = result.error
      this.#options.onFailed(job, result.gone)
      return DONE
    }
    job.lastError = result.error
    const policy = { ...this.#options.retry, ...job.subscription.retry }
    if (job.attempts >= policy.maxAttempts || this.#closed) {
      this.#options.onFailed(job, false)
      return DONE
    }
    return { kind: 'later', delayMs: result.retryAfterMs === undefined ? backoffMs(policy, job.attempts) : Math.min(result.retryAfterMs, policy.maxDelayMs) }
  }

  async close (): Promise<void> {
    this.#closed = true
    await this.#agent.close()
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

  async #send (job: Job): Promise<AttemptResult> {
    let built: WebhookRequest
    try {
      built = this.#options.build(job, new Date())
    } catch (err: unknown) {
      // the event was accepted but cannot be sent in this subscription's mode: it never will be, so no retry
      return { kind: 'failed', status: undefined, error: `the request could not be built: ${describe(err)}`, gone: false }
    }
    const { headers, body } = built
    const timeoutMs = job.subscription.timeoutMs ?? this.#options.timeoutMs
    try {
      const res = await request(job.subscription.webhook_url, {
        method: 'POST',
        headers,
        body,
        dispatcher: this.#agent,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        signal: AbortSignal.timeout(timeoutMs)
      })
      await res.body.dump()
      const status = res.statusCode
      if (status >= 200 && status < 300) return { kind: 'delivered', status }
      if (isRetryable(status)) return { kind: 'retry', status, error: `HTTP ${status}`, retryAfterMs: retryAfterMs(res.headers['retry-after']) }
      return { kind: 'failed', status, error: `HTTP ${status}`, gone: status === 410 }
    } catch (err: unknown) {
      // the connector refused the address: asking again would meet the same answer, or a worse one
      if (err instanceof DeniedAddressError) return { kind: 'failed', status: undefined, error: err.message, gone: false }
      return { kind: 'retry', status: undefined, error: err instanceof Error ? err.message : String(err), retryAfterMs: undefined }
    }
  }
}

const DONE: NextStep = { kind: 'done' }

/**
 * The in-memory delivery queue: a FIFO per subscription, at most `concurrency`
 * requests in flight each, retries scheduled with backoff; an open circuit holds its
 * subscription's whole queue with one timer. Nothing here is awaited by a publisher:
 * `enqueue` only queues.
 */
export class DeliveryQueue implements DeliveryQueueLike {
  readonly #options: DeliveryOptions
  readonly #deliverer: Deliverer
  readonly #waiting = new Map<string, Job[]>()
  readonly #inFlight = new Map<string, number>()
  readonly #timers = new Set<NodeJS.Timeout>()
  /** Subscriptions whose open circuit has a wake-up timer. */
  readonly #sleeping = new Set<string>()
  #queued = 0
  readonly #queuedBy = new Map<string, number>()
  #closed = false

  constructor (options: DeliveryOptions, deliverer = new Deliverer(options)) {
    this.#options = options
    this.#deliverer = deliverer
  }

  depth (): number {
    return this.#queued
  }

  depthOf (subscriptionId: string): number {
    return this.#queuedBy.get(subscriptionId) ?? 0
  }

  enqueue (job: Job): boolean {
    if (this.#closed || this.#queued >= this.#options.maxQueued) return false
    this.#queued++
    this.#count(job.subscription.id, 1)
    this.#push(job)
    return true
  }

  breakerState (subscriptionId: string): BreakerState {
    return this.#deliverer.breakerState(subscriptionId)
  }

  async close (): Promise<void> {
    this.#closed = true
    for (const timer of this.#timers) clearTimeout(timer)
    this.#timers.clear()
    await this.#deliverer.close()
  }

  #push (job: Job): void {
    const key = job.subscription.id
    const list = this.#waiting.get(key)
    if (list === undefined) this.#waiting.set(key, [job])
    else list.push(job)
    this.#pump(key)
  }

  #pump (key: string): void {
    const list = this.#waiting.get(key)
    const holdMs = this.#deliverer.holdMs(key)
    if (list !== undefined && list.length > 0 && holdMs > 0) {
      // the whole queue of an open circuit waits, with one timer, not one per delivery
      this.#wakeLater(key, holdMs)
      return
    }
    while (list !== undefined && list.length > 0 && (this.#inFlight.get(key) ?? 0) < this.#options.concurrency && !this.#closed) {
      const job = list.shift()
      if (job === undefined) break
      this.#inFlight.set(key, (this.#inFlight.get(key) ?? 0) + 1)
      this.#deliverer.attempt(job).then((next) => {
        if (next.kind === 'done') this.#done(key)
        else this.#later(job, next.delayMs)
      }, (err: unknown) => {
        // attempt() ends every delivery itself; a rejection comes from past that (onDelivered, onFailed): it is over all the same
        this.#done(key)
        this.#options.onError(err, { op: 'webhook delivery', subscription: key, eventId: job.eventId })
      }).finally(() => {
        this.#inFlight.set(key, (this.#inFlight.get(key) ?? 1) - 1)
        this.#pump(key)
      }).catch((err: unknown) => {
        // a throw of the queue's own bookkeeping: nothing left to end, but not silent
        this.#options.onError(err, { op: 'webhook queue', subscription: key })
      })
    }
    if (list?.length === 0) this.#waiting.delete(key)
  }

  /** A delivery ended: it leaves the queue's counts. */
  #done (subscriptionId: string): void {
    this.#queued--
    this.#count(subscriptionId, -1)
  }

  #count (subscriptionId: string, delta: number): void {
    const n = (this.#queuedBy.get(subscriptionId) ?? 0) + delta
    if (n > 0) this.#queuedBy.set(subscriptionId, n)
    else this.#queuedBy.delete(subscriptionId)
  }

  /** Pump a subscription whose circuit is open again once a probe may go. */
  #wakeLater (key: string, delayMs: number): void {
    if (this.#sleeping.has(key) || this.#closed) return
    this.#sleeping.add(key)
    const timer = setTimeout(() => {
      this.#timers.delete(timer)
      this.#sleeping.delete(key)
      this.#pump(key)
    }, delayMs)
    this.#timers.add(timer)
  }

  /** Put a job back in its subscription's queue after `delayMs`. */
  #later (job: Job, delayMs: number): void {
    if (this.#closed) return
    const timer = setTimeout(() => {
      this.#timers.delete(timer)
      this.#push(job)
    }, delayMs)
    this.#timers.add(timer)
  }
}

/** An error as a dead letter names it: `TypeError: cannot set schemaurl on version 1.0 event`. */
function describe (err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err)
}

function isAttemptResult (value: unknown): value is AttemptResult {
  return typeof value === 'object' && value !== null && 'kind' in value
}
