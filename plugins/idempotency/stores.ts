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
 * In this process: at most `maxEntries` claims in each of two LRUs, each claim for its
 * TTL; beyond that the least recently claimed are forgotten (`onEvict` counts them).
 * Synchronous, so the publish path takes no promise for it.
 *
 * The first source to claim an id is kept under the id alone: a string the event
 * already holds, where a joined `source` + `id` key would be a new string per event,
 * kept for the whole window (at 100,000 entries, twice the time per claim). Ids are
 * meant to be unique per source; the same id from another source (counters like "1"
 * from many services) is kept under the joined key in a second LRU, which is only
 * looked at once it holds anything.
 */
export class MemoryIdempotencyStore implements IdempotencyStore {
  /** id → the source that claimed it first */
  readonly #byId: LRUCache<string, string>
  /** joined key of every other source's claim of an id */
  readonly #byKey: LRUCache<string, true>

  constructor (maxEntries: number, onEvict: () => void = () => {}) {
    // every claim passes its own TTL; `ttl: 1` only turns TTL tracking on
    const options = { max: maxEntries, ttl: 1, dispose: (_value: unknown, _key: string, reason: string) => { if (reason === 'evict') onEvict() } }
    this.#byId = new LRUCache<string, string>(options)
    this.#byKey = new LRUCache<string, true>(options)
  }

  claim (source: string, id: string, ttlMs: number): boolean {
    // peek: a check is not a use, the least recently *claimed* go first
    const first = this.#byId.peek(id)
    if (first === source) return false
    if (first === undefined && (this.#byKey.size === 0 || !this.#byKey.has(joinedKey(source, id)))) {
      this.#byId.set(id, source, { ttl: ttlMs })
      return true
    }
    const key = joinedKey(source, id)
    if (this.#byKey.has(key)) return false
    this.#byKey.set(key, true, { ttl: ttlMs })
    return true
  }

  release (source: string, id: string): void {
    if (this.#byId.peek(id) === source) this.#byId.delete(id)
    else if (this.#byKey.size > 0) this.#byKey.delete(joinedKey(source, id))
  }

  /** Claims remembered. */
  get size (): number {
    return this.#byId.size + this.#byKey.size
  }
}

/** `source` + `id`, length-prefixed so that no pair can spell another's key. */
function joinedKey (source: string, id: string): string {
  return `${source.length}:${source}${id}`
}

/**
 * In Redis, shared by every node: a claim is `SET key 1 NX PX ttl`, one atomic round
 * trip, so two nodes racing on the same event deliver it once. Redis expires keys.
 */
export class RedisIdempotencyStore implements IdempotencyStore {
  constructor (private readonly redis: Redis, private readonly prefix = 'ce-broker:idem:') {}

  async claim (source: string, id: string, ttlMs: number): Promise<boolean> {
    return await this.redis.set(this.keyOf(source, id), '1', 'PX', ttlMs, 'NX') === 'OK'
  }

  async release (source: string, id: string): Promise<void> {
    await this.redis.del(this.keyOf(source, id))
  }

  /** The Redis key of the event's claim: what the broker's commit takes with the event's journal entry. */
  keyOf (source: string, id: string): string {
    return this.prefix + joinedKey(source, id)
  }
}
