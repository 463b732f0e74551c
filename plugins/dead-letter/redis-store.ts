import type { Redis } from 'ioredis'
import { compileFilter } from '../../src/core/index.js'
import type { DeadLetterEntry, DeadLetterPage, DeadLetterQuery, DeadLetterRecord, DeadLetterStore } from './store.js'

/** Keys of the store under its prefix (default `ce-broker:dlq`). */
const RECORDS = ':records'
const ORIGINALS = ':originals'
const ORDER = ':order'
const SEQ = ':seq'

/** How many ids a `list` reads per round trip while it looks for matches. */
const SCAN_BATCH = 200

/**
 * Add an entry and evict the oldest beyond the cap, in one step for every node.
 * KEYS: records, originals, order, seq. ARGV: id, record JSON, original JSON, cap.
 * Returns how many entries were evicted.
 */
const ADD = `
local seq = redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[3], seq, ARGV[1])
local over = redis.call('ZCARD', KEYS[3]) - tonumber(ARGV[4])
if over <= 0 then return 0 end
local oldest = redis.call('ZRANGE', KEYS[3], 0, over - 1)
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, over - 1)
redis.call('HDEL', KEYS[1], unpack(oldest))
redis.call('HDEL', KEYS[2], unpack(oldest))
return over
`

/** KEYS: records. ARGV: id, record JSON. Replaces only what is there. */
const REPLACE = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
`

/** KEYS: records, originals, order. ARGV: id. */
const DELETE = `
if redis.call('ZREM', KEYS[3], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
`

/** The original message as stored: JSON, with the payload in base64. */
interface StoredOriginal {
  readonly topic: string
  readonly payload: string
  readonly qos: 0 | 1 | 2
  readonly retain: boolean
  readonly clientId: string | null
}

/**
 * Dead letters shared by every node of a cluster, at most `maxEntries`, the oldest
 * evicted first (reported to `onEvict` with how many). Two hashes hold the records and
 * the originals by id, a sorted set their arrival order; adding, evicting, replacing
 * and deleting are each one Lua script, so nodes never see half an entry. A replay on
 * one node removes the dead letter for all of them.
 */
export class RedisDeadLetterStore implements DeadLetterStore {
  readonly #redis: Redis
  readonly #keys: readonly [records: string, originals: string, order: string, seq: string]

  constructor (redis: Redis, private readonly maxEntries: number, private readonly onEvict: (count: number) => void = () => {}, prefix = 'ce-broker:dlq') {
    this.#redis = redis
    this.#keys = [prefix + RECORDS, prefix + ORIGINALS, prefix + ORDER, prefix + SEQ]
  }

  async add (entry: DeadLetterEntry): Promise<void> {
    const original: StoredOriginal = { ...entry.original, payload: entry.original.payload.toString('base64') }
    const evicted = await this.#redis.eval(ADD, 4, ...this.#keys, entry.id, JSON.stringify(entry.record), JSON.stringify(original), this.maxEntries)
    if (typeof evicted === 'number' && evicted > 0) this.onEvict(evicted)
  }

  async replace (id: string, record: DeadLetterRecord): Promise<boolean> {
    return await this.#redis.eval(REPLACE, 1, this.#keys[0], id, JSON.stringify(record)) === 1
  }

  async get (id: string): Promise<DeadLetterEntry | undefined> {
    const [record, original] = await Promise.all([this.#redis.hget(this.#keys[0], id), this.#redis.hget(this.#keys[1], id)])
    return record === null ? undefined : toEntry(id, parseRecord(record), original)
  }

  async list (query: DeadLetterQuery): Promise<DeadLetterPage> {
    const [recordsKey, originalsKey, orderKey] = this.#keys
    const matches = query.topic === undefined ? undefined : compileFilter(query.topic)
    let start = 0
    if (query.cursor !== undefined) {
      const rank = await this.#redis.zrevrank(orderKey, query.cursor)
      // an evicted or deleted cursor: the page starts over at the newest, as in memory
      start = rank === null ? 0 : rank + 1
    }
    const found: Array<{ id: string, record: DeadLetterRecord }> = []
    let next: string | undefined
    scan: for (;;) {
      const ids = await this.#redis.zrevrange(orderKey, start, start + SCAN_BATCH - 1)
      if (ids.length === 0) break
      start += ids.length
      const records = await this.#redis.hmget(recordsKey, ...ids)
      for (let i = 0; i < ids.length; i++) {
        const json = records[i]
        const id = ids[i]
        // deleted by another node between the two reads
        if (json === null || json === undefined || id === undefined) continue
        const record = parseRecord(json)
        if (matches !== undefined && !matches(record.data.topic)) continue
        if (query.reason !== undefined && record.data.reason !== query.reason) continue
        if (found.length === query.limit) {
          next = found[found.length - 1]?.id
          break scan
        }
        found.push({ id, record })
      }
    }
    const originals = found.length === 0 ? [] : await this.#redis.hmget(originalsKey, ...found.map((f) => f.id))
    const items: DeadLetterEntry[] = []
    found.forEach((f, i) => {
      const entry = toEntry(f.id, f.record, originals[i] ?? null)
      if (entry !== undefined) items.push(entry)
    })
    return next === undefined ? { items } : { items, next }
  }

  async delete (id: string): Promise<boolean> {
    return await this.#redis.eval(DELETE, 3, this.#keys[0], this.#keys[1], this.#keys[2], id) === 1
  }
}

function toEntry (id: string, record: DeadLetterRecord, original: string | null): DeadLetterEntry | undefined {
  if (original === null) return undefined
  // written by add() above
  const stored = JSON.parse(original) as StoredOriginal
  return { id, record, original: { ...stored, payload: Buffer.from(stored.payload, 'base64') } }
}

function parseRecord (json: string): DeadLetterRecord {
  // written by add() or replace() above, from a record the dead-letter plugin built
  return JSON.parse(json) as DeadLetterRecord
}
