import type { Redis } from 'ioredis'
import { LRUCache } from 'lru-cache'

/**
 * Remembers which events were accepted, by CloudEvents `source` and `id`. `claim` is
 * atomic: of two publishes of the same event racing (on one node or, with Redis, on
 * several), exactly one gets `true`.
 */
export interface IdempotencyStore {
  /** Claim the event for `ttlMs`: `true` when it was free, `false` when it is claimed already. */
  claim: (source: string, id: string, ttlMs: number) => boolean | Promise<boolean>
  /** Give a claim back: the event was refused after all, and may be sent again. */
  release: (source: string, id: string) => void | Promise<void>
}

/**
 * In this process: at most `maxEntries` ids, each for its TTL; beyond that the least
 * recently claimed are forgotten (`onEvict` counts them). Synchronous, so the publish
 * path takes no promise for it.
 *
 * Keyed by `id` alone, holding the source(s) that claimed it: the id is a string the
 * event already holds, where a joined `source` + `id` key would be a new string per
 * event, kept for the whole window (at 100,000 entries, twice the time per claim). Ids
 * are meant to be unique per source, so an id claimed by a second source is rare; it
 * then holds both, until the later claim's TTL ends.
 */
export class MemoryIdempotencyStore implements IdempotencyStore {
  readonly #ids: LRUCache<string, string | readonly string[]>

  constructor (maxEntries: number, onEvict: () => void = () => {}) {
    this.#ids = new LRUCache<string, string | readonly string[]>({
      max: maxEntries,
      // every claim passes its own TTL; this only enables TTL tracking
      ttl: 1,
      dispose: (_value, _key, reason) => { if (reason === 'evict') onEvict() }
    })
  }

  claim (source: string, id: string, ttlMs: number): boolean {
    // peek: a check is not a use, the least recently *claimed* go first
    const claimed = this.#ids.peek(id)
    if (claimed === undefined) {
      this.#ids.set(id, source, { ttl: ttlMs })
      return true
    }
    if (claimed === source || (typeof claimed !== 'string' && claimed.includes(source))) return false
    this.#ids.set(id, [...(typeof claimed === 'string' ? [claimed] : claimed), source], { ttl: ttlMs })
    return true
  }

  release (source: string, id: string): void {
    const claimed = this.#ids.peek(id)
    if (claimed === source) {
      this.#ids.delete(id)
      return
    }
    if (claimed === undefined || typeof claimed === 'string' || !claimed.includes(source)) return
    // the id stays claimed by its other sources, for the time it had left
    const rest = claimed.filter((other) => other !== source)
    this.#ids.set(id, rest.length === 1 ? String(rest[0]) : rest, { ttl: this.#ids.getRemainingTTL(id) })
  }

  /** Ids remembered. */
  get size (): number {
    return this.#ids.size
  }
}

/**
 * In Redis, shared by every node: a claim is `SET key 1 NX PX ttl`, one atomic round
 * trip, so two nodes racing on the same event deliver it once. Redis expires keys.
 */
export class RedisIdempotencyStore implements IdempotencyStore {
  constructor (private readonly redis: Redis, private readonly prefix = 'ce-broker:idem:') {}

  async claim (source: string, id: string, ttlMs: number): Promise<boolean> {
    return await this.redis.set(this.#key(source, id), '1', 'PX', ttlMs, 'NX') === 'OK'
  }

  async release (source: string, id: string): Promise<void> {
    await this.redis.del(this.#key(source, id))
  }

  /** `source` + `id`, length-prefixed so that no pair can spell another's key. */
  #key (source: string, id: string): string {
    return `${this.prefix}${source.length}:${source}${id}`
  }
}
