import type { Redis } from 'ioredis'
import { BadRequestError, compileFilter } from '../../src/core/index.js'

/** An accepted event as `GET /api/mqtt/messages/:topic` lists it: its audit record without `outcome`, and where it stands in the trail. */
export interface TrailMessage {
  /** Opaque; give it as `?since=` to get the events after this one. */
  readonly cursor: string
  readonly topic: string
  readonly [field: string]: unknown
}

/** One page of the trail: oldest first, newest last. */
export interface TrailPage {
  readonly messages: readonly TrailMessage[]
  /** Where the next poll starts (`?since=`): after the last message, or after everything read when there was none. */
  readonly next: string
}

/** The accepted events of the audit trail, by topic filter. */
export interface AuditTrail {
  /**
   * The accepted events on topics `filter` matches, newest last: those after `since`
   * (exclusive), the oldest first, up to `limit`; without `since`, the `limit` most
   * recent. Throws a `BadRequestError` for a cursor this trail never gave out.
   */
  read: (filter: string, since: string | undefined, limit: number) => Promise<TrailPage>
  /** The cursor of the trail's newest entry: a poll from it gets only what comes later. */
  head: () => Promise<string>
}

interface RingEntry {
  readonly seq: number
  readonly topic: string
  readonly line: Buffer
}

/**
 * Embedded mode: the newest accepted events of this node, in a ring of
 * `maxEntries` audit records (the audit plugin pushes each one as it writes it).
 * Cursors are `<run>-<sequence>`: a cursor from an earlier run of the process reads
 * from the oldest event kept, as one older than the ring does.
 */
export class MemoryAuditTrail implements AuditTrail {
  readonly #ring: Array<RingEntry | undefined>
  /** Tells this run's cursors from an earlier process's. */
  readonly #run = Date.now().toString(36)
  /** Sequence number of the newest entry; 0 before the first. */
  #seq = 0
  /** The oldest sequence number still kept, and the bytes kept: records carry payloads of up to `limits.maxPayloadBytes`. */
  #oldest = 1
  #bytes = 0

  /**
   * @param maxEntries `audit.recent.maxEntries`
   * @param maxBytes `audit.recent.maxBytes`: the oldest records go first beyond it
   */
  constructor (readonly maxEntries: number, readonly maxBytes: number) {
    this.#ring = new Array<RingEntry | undefined>(maxEntries)
  }

  /** Keep the audit record of an accepted event (a copy: `line` may be a view into a larger buffer). */
  push (topic: string, line: Buffer): void {
    const seq = ++this.#seq
    const slot = seq % this.maxEntries
    this.#bytes += line.length - (this.#ring[slot]?.line.length ?? 0)
    this.#ring[slot] = { seq, topic, line: Buffer.from(line) }
    this.#oldest = Math.max(this.#oldest, seq - this.maxEntries + 1)
    while (this.#bytes > this.maxBytes && this.#oldest < seq) {
      const evicted = this.#ring[this.#oldest % this.maxEntries]
      this.#bytes -= evicted?.line.length ?? 0
      this.#ring[this.#oldest % this.maxEntries] = undefined
      this.#oldest++
    }
  }

  async head (): Promise<string> {
    return this.#cursor(this.#seq)
  }

  async read (filter: string, since: string | undefined, limit: number): Promise<TrailPage> {
    const matches = compileFilter(filter)
    const oldest = this.#oldest
    const messages: TrailMessage[] = []
    let bytes = 0
    if (since === undefined) {
      for (let seq = this.#seq; seq >= oldest && messages.length < limit && bytes < PAGE_BYTES; seq--) {
        const entry = this.#ring[seq % this.maxEntries]
        if (entry === undefined || entry.seq !== seq || !matches(entry.topic)) continue
        messages.push(toMessage(this.#cursor(seq), entry.line))
        bytes += entry.line.length
      }
      return { messages: messages.reverse(), next: this.#cursor(this.#seq) }
    }
    for (let seq = Math.max(oldest, this.#after(since) + 1); seq <= this.#seq; seq++) {
      const entry = this.#ring[seq % this.maxEntries]
      if (entry === undefined || entry.seq !== seq || !matches(entry.topic)) continue
      messages.push(toMessage(this.#cursor(seq), entry.line))
      bytes += entry.line.length
      if (messages.length === limit || bytes >= PAGE_BYTES) return { messages, next: this.#cursor(seq) }
    }
    return { messages, next: this.#cursor(this.#seq) }
  }

  #cursor (seq: number): string {
    return `${this.#run}-${seq}`
  }

  /** The sequence number a cursor stands for; 0 (before everything) for one of an earlier run. */
  #after (cursor: string): number {
    const match = /^([0-9a-z]{1,12})-(\d{1,15})$/.exec(cursor)
    if (match === null) throw new BadRequestError(`since ${JSON.stringify(cursor)} is not a cursor of this trail`)
    return match[1] === this.#run ? Number(match[2]) : 0
  }
}

/**
 * A page stops once its records hold this many bytes (with `next` where it stopped):
 * records carry payloads of up to `limits.maxPayloadBytes`, and `limit` alone would let
 * one request build hundreds of MB.
 */
const PAGE_BYTES = 4 * 1024 * 1024

/** Entries read from the stream per command. */
const SCAN_BATCH = 500
/** Most entries one request reads: the stream holds every topic's records, and a request must stay cheap. */
const MAX_SCANNED = 5000
/** The largest sequence part of a stream id. */
const MAX_SEQ = 18446744073709551615n

/**
 * With Redis: the audit stream (`audit.stream.key`), which every node adds to, read
 * with XRANGE / XREVRANGE and filtered by outcome and topic. Cursors are stream ids.
 * One request reads at most `MAX_SCANNED` entries: a page may then hold fewer than
 * `limit` events while more lie further on, and `next` carries on from where it stopped.
 */
export class RedisAuditTrail implements AuditTrail {
  constructor (readonly redis: Redis, readonly key: string) {}

  async head (): Promise<string> {
    const [newest] = await this.redis.xrevrange(this.key, '+', '-', 'COUNT', 1)
    return newest?.[0] ?? '0-0'
  }

  async read (filter: string, since: string | undefined, limit: number): Promise<TrailPage> {
    const matches = compileFilter(filter)
    const messages: TrailMessage[] = []
    let scanned = 0
    if (since === undefined) {
      let next: string | undefined
      let end: string | undefined = '+'
      let bytes = 0
      while (end !== undefined && messages.length < limit && scanned < MAX_SCANNED && bytes < PAGE_BYTES) {
        const entries: Array<[id: string, fields: string[]]> = await this.redis.xrevrange(this.key, end, '-', 'COUNT', SCAN_BATCH)
        for (const [id, fields] of entries) {
          next ??= id
          scanned++
          const message = accepted(id, fields, matches)
          if (message !== undefined) {
            messages.push(message)
            bytes += fields[1]?.length ?? 0
          }
          if (messages.length === limit || bytes >= PAGE_BYTES) break
        }
        const last = entries.at(-1)
        end = entries.length < SCAN_BATCH || last === undefined ? undefined : before(last[0])
      }
      return { messages: messages.reverse(), next: next ?? '0-0' }
    }
    let next = checkId(since)
    let bytes = 0
    while (scanned < MAX_SCANNED) {
      const entries = await this.redis.xrange(this.key, after(next), '+', 'COUNT', SCAN_BATCH)
      for (const [id, fields] of entries) {
        next = id
        scanned++
        const message = accepted(id, fields, matches)
        if (message !== undefined) {
          messages.push(message)
          bytes += fields[1]?.length ?? 0
        }
        if (messages.length === limit || bytes >= PAGE_BYTES) return { messages, next }
      }
      if (entries.length < SCAN_BATCH) break
    }
    return { messages, next }
  }
}

/** The message of a stream entry when it records an accepted event on a matching topic. */
function accepted (id: string, fields: readonly string[], matches: (topic: string) => boolean): TrailMessage | undefined {
  const line = fields[0] === 'record' ? fields[1] : undefined
  if (line === undefined) return undefined
  // read outcome and topic from the record's head before parsing it: most entries are other topics'
  const head = RECORD_HEAD.exec(line)
  if (head === null || head[1] !== 'accepted') return undefined
  const topic: unknown = JSON.parse(head[2] ?? '""')
  if (typeof topic !== 'string' || !matches(topic)) return undefined
  return toMessage(id, line)
}

/**
 * The outcome and topic of an audit record, as `RecordWriter` writes them: first
 * `"outcome"`, later the first `"topic"` (a `"` inside a string is escaped, so neither
 * key can be matched inside the client id or the user name before it).
 */
const RECORD_HEAD = /"outcome":"([a-z]+)".*?"topic":("(?:[^"\\]|\\.)*")/

/** An audit record as a trail message: its members but `outcome` (always accepted here), after its cursor. */
function toMessage (cursor: string, line: Buffer | string): TrailMessage {
  const record: unknown = JSON.parse(line.toString())
  if (typeof record !== 'object' || record === null) return { cursor, topic: '' }
  // fromEntries defines each member: a "__proto__" in the record stays a plain member
  const fields = Object.fromEntries(Object.entries(record).filter(([key]) => key !== 'outcome'))
  return { ...fields, cursor, topic: typeof fields.topic === 'string' ? fields.topic : '' }
}

function checkId (cursor: string): string {
  const match = /^(\d{1,20})-(\d{1,20})$/.exec(cursor)
  // both parts of a stream id are 64-bit: a larger one would reach Redis and fail there
  const ms = BigInt(match?.[1] ?? '0')
  const seq = BigInt(match?.[2] ?? '0')
  // and the id after the last one possible is none
  if (match === null || ms > MAX_SEQ || seq > MAX_SEQ || (ms === MAX_SEQ && seq === MAX_SEQ)) {
    throw new BadRequestError(`since ${JSON.stringify(cursor)} is not a cursor of this trail`)
  }
  return cursor
}

/** The smallest stream id after `id` (XRANGE's exclusive `(` needs Redis 6.2). */
function after (id: string): string {
  const [ms = '0', seq = '0'] = id.split('-')
  const n = BigInt(seq)
  return n === MAX_SEQ ? `${BigInt(ms) + 1n}-0` : `${ms}-${n + 1n}`
}

/** The largest stream id before `id`, or `undefined` before the first one possible. */
function before (id: string): string | undefined {
  const [ms = '0', seq = '0'] = id.split('-')
  const n = BigInt(seq)
  if (n > 0n) return `${ms}-${n - 1n}`
  const m = BigInt(ms)
  return m === 0n ? undefined : `${m - 1n}-${MAX_SEQ}`
}
