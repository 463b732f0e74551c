import type { Client } from 'aedes'

interface Bucket {
  tokens: number
  /** When `tokens` was last brought up to date, in ms (`performance.now()`). */
  at: number
}

/**
 * `limits.publishRatePerClient`: a token bucket per client, `rate` publishes a second
 * with `burst` at once, as EMQX's `messages_rate`. A publish past it is not dropped: it
 * waits for its token. aedes reads a client's socket again only once every packet of
 * the last read is handled, so while its publishes wait the client's reads are paused
 * and TCP pushes back on it alone; other clients are not slowed.
 */
export class PublishRate {
  readonly #buckets = new WeakMap<Client, Bucket>()

  constructor (private readonly rate: number, private readonly burst: number) {}

  /** Take `client`'s next token: how many ms this publish must wait for it (0: go now). Tokens taken ahead make the next waits longer, in order. */
  delayOf (client: Client, now = performance.now()): number {
    let bucket = this.#buckets.get(client)
    if (bucket === undefined) {
      bucket = { tokens: this.burst, at: now }
      this.#buckets.set(client, bucket)
    }
    bucket.tokens = Math.min(this.burst, bucket.tokens + (now - bucket.at) * this.rate / 1000) - 1
    bucket.at = now
    return bucket.tokens >= 0 ? 0 : -bucket.tokens * 1000 / this.rate
  }
}
