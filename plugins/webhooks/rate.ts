import type { Subscription } from './subscriptions.js'

interface Bucket {
  /** Requests a minute (`WebHook-Allowed-Rate`). */
  perMinute: number
  /** Tokens now, at most one: requests are spaced, never sent in a burst. */
  tokens: number
  /** When `tokens` was last brought up to date (`performance.now()`). */
  at: number
}

/**
 * The request rate each endpoint allowed in its validation handshake
 * (`WebHook-Allowed-Rate`, CloudEvents HTTP Web Hooks §4.1.4): a token bucket per
 * subscription holding one token, refilled at that rate, so requests are spaced
 * `60 000 / rate` ms apart and a minute never sees more than the rate. Retries count
 * too: the rate is the endpoint's, whatever the request. With Redis each node keeps its
 * own buckets, so a cluster of N nodes may send up to N times the rate.
 */
export class DeliveryRates {
  readonly #buckets = new Map<string, Bucket>()

  /** @param onHeld told each time a delivery waits for its subscription's rate */
  constructor (private readonly onHeld: (subscriptionId: string) => void = () => {}) {}

  /** How long the next request of a subscription must wait, without taking its token; 0 when it may go. */
  holdMs (subscriptionId: string, now = performance.now()): number {
    const bucket = this.#buckets.get(subscriptionId)
    if (bucket === undefined) return 0
    const wait = this.#waitOf(bucket, now)
    if (wait > 0) this.onHeld(subscriptionId)
    return wait
  }

  /** Take a token for a request of `subscription`: 0 when taken, else how long to wait (nothing taken). */
  take (subscription: Subscription, now = performance.now()): number {
    const perMinute = subscription.allowedRate
    if (perMinute === undefined) {
      this.#buckets.delete(subscription.id)
      return 0
    }
    let bucket = this.#buckets.get(subscription.id)
    if (bucket === undefined) this.#buckets.set(subscription.id, bucket = { perMinute, tokens: 1, at: now })
    // registered again with another rate: the new one counts from now
    bucket.perMinute = perMinute
    const wait = this.#waitOf(bucket, now)
    if (wait > 0) {
      this.onHeld(subscription.id)
      return wait
    }
    bucket.tokens -= 1
    return 0
  }

  #waitOf (bucket: Bucket, now: number): number {
    bucket.tokens = Math.min(1, bucket.tokens + (now - bucket.at) * bucket.perMinute / 60_000)
    bucket.at = now
    return bucket.tokens >= 1 ? 0 : Math.ceil((1 - bucket.tokens) * 60_000 / bucket.perMinute)
  }
}
