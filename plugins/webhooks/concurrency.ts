/** How a subscription's concurrency adapts: the bounds and the latency above which an answer counts as a sign of overload. */
export interface ConcurrencyOptions {
  /** `webhooks.defaults.concurrency`: requests in flight per subscription at most. */
  readonly max: number
  /** Where a subscription's limit starts. */
  readonly initial: number
  /** `webhooks.defaults.latencyTargetMs`: an attempt answered slower than this counts as overload, as a 503 does. */
  readonly latencyTargetMs: number
}

/** Factor by which overload cuts the limit (Netflix concurrency-limits' AIMD default). */
const BACKOFF = 0.9

/**
 * One subscription's concurrency limit, AIMD as TCP's congestion window: it starts at
 * `initial` and grows by one per attempt answered in time (slow start) until the first
 * sign of overload, then by one per limit's worth of such attempts; each sign of
 * overload — a retryable failure (network error, timeout, 408, 429, 5xx) or an answer
 * slower than `latencyTargetMs` — cuts it by a tenth, never below one. It grows only
 * while the subscription uses at least half of it, so a quiet subscription keeps the
 * limit it has earned, not more. A fast receiver reaches `max` within a few hundred
 * deliveries; a receiver that fails or slows when pressed is held near what it takes.
 */
export class ConcurrencyLimit {
  readonly #options: ConcurrencyOptions
  #limit: number
  #slowStart = true

  constructor (options: ConcurrencyOptions) {
    this.#options = options
    this.#limit = Math.min(options.max, Math.max(1, options.initial))
  }

  /** Requests that may be in flight now. */
  get current (): number {
    return Math.max(1, Math.floor(this.#limit))
  }

  /**
   * An attempt ended: `overloaded` when it failed in a way worth retrying, with its
   * latency, and the requests in flight when it ended (itself included).
   */
  sample (latencyMs: number, overloaded: boolean, inFlight: number): void {
    if (overloaded || latencyMs > this.#options.latencyTargetMs) {
      this.#limit = Math.max(1, this.#limit * BACKOFF)
      this.#slowStart = false
      return
    }
    // not pressed against its limit: no evidence that more would be taken
    if (inFlight * 2 < this.current) return
    this.#limit = Math.min(this.#options.max, this.#limit + (this.#slowStart ? 1 : 1 / this.#limit))
  }
}
