import type { Redis } from 'ioredis'

/** Where the lanes live: beside BullMQ's keys of the same subscription. */
const PREFIX = 'ce-broker:webhooks:lanes'

/**
 * Append a delivery to its key's lane, unless it is there already (an event routed
 * again from a journal). KEYS: lane, ids of the lane, keys with a lane, entries in all
 * lanes; ARGV: ordering key, job id, entry. Returns the lane's length (1: it is the
 * head, to be queued now), or -1 for a delivery the lane holds already.
 */
const APPEND = `
if redis.call('SISMEMBER', KEYS[2], ARGV[2]) == 1 then return -1 end
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('INCR', KEYS[4])
return redis.call('RPUSH', KEYS[1], ARGV[3])`

/**
 * The head of a lane ended: drop it, and return the next head's entry (to be queued),
 * or false. Only the head with this job id is dropped, so an end told twice (a
 * delivery taken over after its node died) moves the lane on once. Same KEYS as APPEND;
 * ARGV: ordering key, job id.
 */
const ADVANCE = `
local head = redis.call('LINDEX', KEYS[1], 0)
if not head then
  redis.call('SREM', KEYS[3], ARGV[1])
  return false
end
if string.sub(head, 1, #ARGV[2] + 1) ~= ARGV[2] .. '\\n' then return false end
redis.call('LPOP', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[2])
redis.call('DECR', KEYS[4])
local next = redis.call('LINDEX', KEYS[1], 0)
if not next then
  redis.call('SREM', KEYS[3], ARGV[1])
  redis.call('DEL', KEYS[2])
  return false
end
return next`

/** A lane entry: the BullMQ job id of the delivery, and the delivery as stored. */
export interface LaneEntry {
  readonly jobId: string
  readonly payload: string
}

/**
 * The ordering lanes of the shared delivery queue: per ordered subscription and
 * ordering key, a Redis list of the deliveries of that key in the order they were
 * queued. Only a lane's head is a BullMQ job; when it ends (delivered, or failed for
 * good) the next one becomes a job. So a key's deliveries go one at a time on whichever
 * node takes the head, and a node that dies holding it loses nothing: BullMQ hands the
 * head to another node, and a head whose job was never added (the node died between the
 * two writes) is added again by `sweep`.
 */
export class RedisLanes {
  readonly #redis: Redis

  constructor (redis: Redis) {
    this.#redis = redis
  }

  /** Append each entry to its key's lane; returns, in order, whether each is its lane's head now (`undefined`: it was there already). */
  async append (subscriptionId: string, entries: ReadonlyArray<LaneEntry & { readonly key: string }>): Promise<Array<boolean | undefined>> {
    const pipeline = this.#redis.pipeline()
    for (const { key, jobId, payload } of entries) pipeline.eval(APPEND, 4, ...this.#keys(subscriptionId, key), key, jobId, `${jobId}\n${payload}`)
    const results = await pipeline.exec() ?? []
    return results.map(([err, length]) => {
      if (err !== null) throw err
      return length === -1 ? undefined : length === 1
    })
  }

  /** The head `jobId` of `key`'s lane ended: the next head, if any, to be queued. */
  async advance (subscriptionId: string, key: string, jobId: string): Promise<LaneEntry | undefined> {
    const next: unknown = await this.#redis.eval(ADVANCE, 4, ...this.#keys(subscriptionId, key), key, jobId)
    return typeof next === 'string' ? entryOf(next) : undefined
  }

  /** Every lane's head of a subscription (a sweep re-adds those whose job is missing). */
  async heads (subscriptionId: string): Promise<LaneEntry[]> {
    const keys = await this.#redis.smembers(`${PREFIX}:${subscriptionId}:keys`)
    const pipeline = this.#redis.pipeline()
    for (const key of keys) pipeline.lindex(this.#keys(subscriptionId, key)[0], 0)
    const results = await pipeline.exec() ?? []
    return results.flatMap(([, head]) => typeof head === 'string' ? [entryOf(head)] : [])
  }

  /** Deliveries waiting behind their lane's head, for the queue's depth (the heads are BullMQ jobs). */
  async waiting (subscriptionId: string): Promise<number> {
    const results = await this.#redis.multi().get(`${PREFIX}:${subscriptionId}:entries`).scard(`${PREFIX}:${subscriptionId}:keys`).exec()
    const entries = Number(results?.[0]?.[1] ?? 0)
    const lanes = Number(results?.[1]?.[1] ?? 0)
    return Math.max(0, entries - lanes)
  }

  /** Drop every lane of a removed subscription. */
  async forget (subscriptionId: string): Promise<void> {
    const keys = await this.#redis.smembers(`${PREFIX}:${subscriptionId}:keys`)
    const pipeline = this.#redis.pipeline()
    for (const key of keys) pipeline.del(...this.#keys(subscriptionId, key).slice(0, 2))
    pipeline.del(`${PREFIX}:${subscriptionId}:keys`, `${PREFIX}:${subscriptionId}:entries`)
    await pipeline.exec()
  }

  #keys (subscriptionId: string, key: string): [string, string, string, string] {
    // the key is an event's attribute: length-prefixed, so no value can name another lane's keys
    const lane = `${PREFIX}:${subscriptionId}:lane:${key.length}:${key}`
    return [lane, `${lane}:ids`, `${PREFIX}:${subscriptionId}:keys`, `${PREFIX}:${subscriptionId}:entries`]
  }
}

function entryOf (entry: string): LaneEntry {
  const cut = entry.indexOf('\n')
  return { jobId: entry.slice(0, cut), payload: entry.slice(cut + 1) }
}
