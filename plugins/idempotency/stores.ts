import type { Redis } from 'ioredis'
import { LRUCache } from 'lru-cache'

/**
 * Remembers which events were accepted. `claim` is atomic: of two publishes of the
 * same key racing (on one node or, with Redis, on several), exactly one gets `true`.
 */
export interface IdempotencyStore {
  /** Claim `key` for `ttlMs`: `true` when it was free, `false` when it is claimed already. */
  claim: (key: string, ttlMs: number) => boolean | Promise<boolean>
  /** Give a claim back: the event was refused after all, and may be sent again. */
  release: (key: string) => void | Promise<void>
}

/**
 * In this process: at most `maxEntries` keys, each for its TTL; beyond that the
 * least recently claimed are forgotten (`onEvict` counts them). Synchronous, so the
 * publish path takes no promise for it.
 */
export class MemoryIdempotencyStore implements IdempotencyStore {
  readonly #keys: LRUCache<string, true>

  constructor (maxEntries: number, onEvict: () => void = () => {}) {
    this.#keys = new LRUCache<string, true>({
      max: maxEntries,
      // every claim passes its own TTL; this only enables TTL tracking
      ttl: 1,
      dispose: (_value, _key, reason) => { if (reason === 'evict') onEvict() }
    })
  }

  claim (key: string, ttlMs: number): boolean {
    if (this.#keys.has(key)) return false
    this.#keys.set(key, true, { ttl: ttlMs })
    return true
  }

  release (key: string): void {
    this.#keys.delete(key)
  }

  get size (): number {
    return this.#keys.size
  }
}

/**
 * In Redis, shared by every node: a claim is `SET key 1 NX PX ttl`, one atomic round
 * trip, so two nodes racing on the same event deliver it once. Redis expires keys.
 */
export class RedisIdempotencyStore implements IdempotencyStore {
  constructor (private readonly redis: Redis, private readonly prefix = 'ce-broker:idem:') {}

  async claim (key: string, ttlMs: number): Promise<boolean> {
    return await this.redis.set(this.prefix + key, '1', 'PX', ttlMs, 'NX') === 'OK'
  }

  async release (key: string): Promise<void> {
    await this.redis.del(this.prefix + key)
  }
}
