import { compileFilter } from '../../src/core/index.js'

/** A dead-letter record: the CloudEvent published on `$DLQ/<topic>` and kept in the store (PRODUCT §3). */
export interface DeadLetterRecord {
  readonly specversion: '1.0'
  readonly type: 'ce-broker.deadletter'
  readonly source: string
  readonly id: string
  readonly time: string
  readonly datacontenttype: 'application/json'
  readonly data: {
    readonly reason: string
    readonly errors: ReadonlyArray<{ readonly path: string, readonly message: string }>
    readonly topic: string
    readonly clientId: string | null
    /** The original event, when it was JSON. */
    readonly payload?: unknown
    /** The original payload in base64, when it was not JSON. */
    readonly payloadBase64?: string
    /** Reason `delivery_failed`: attempts made, the last HTTP status, the webhook subscription id. */
    readonly attempts?: number
    readonly lastStatus?: number
    readonly subscription?: string
  }
}

/** What replay needs to publish the original again, byte for byte. */
export interface OriginalMessage {
  readonly topic: string
  readonly payload: Buffer
  readonly qos: 0 | 1 | 2
  readonly retain: boolean
  readonly clientId: string | null
}

export interface DeadLetterEntry {
  readonly id: string
  readonly record: DeadLetterRecord
  readonly original: OriginalMessage
}

export interface DeadLetterQuery {
  /** Topic or MQTT filter the original topic must match. */
  readonly topic?: string
  readonly reason?: string
  /** Page size. */
  readonly limit: number
  /** `next` of the previous page. */
  readonly cursor?: string
}

export interface DeadLetterPage {
  readonly items: readonly DeadLetterEntry[]
  /** Cursor of the next page, absent on the last one. */
  readonly next?: string
}

/** Where dead letters are kept: memory when embedded, Redis (shared by the nodes) with `redis.url`. */
export interface DeadLetterStore {
  add: (entry: DeadLetterEntry) => Promise<void>
  /** Replace the record of `id` (a replay that failed again); false when `id` is unknown. */
  replace: (id: string, record: DeadLetterRecord) => Promise<boolean>
  get: (id: string) => Promise<DeadLetterEntry | undefined>
  /** Newest first. */
  list: (query: DeadLetterQuery) => Promise<DeadLetterPage>
  delete: (id: string) => Promise<boolean>
}

/**
 * Dead letters in memory, at most `maxEntries`; the oldest is evicted first, and
 * `onEvict` told how many. A Map keeps insertion order, which is arrival order.
 */
export class MemoryDeadLetterStore implements DeadLetterStore {
  readonly #entries = new Map<string, DeadLetterEntry>()

  constructor (private readonly maxEntries: number, private readonly onEvict: (count: number) => void = () => {}) {}

  async add (entry: DeadLetterEntry): Promise<void> {
    this.#entries.set(entry.id, entry)
    for (const id of this.#entries.keys()) {
      if (this.#entries.size <= this.maxEntries) break
      this.#entries.delete(id)
      this.onEvict(1)
    }
  }

  async replace (id: string, record: DeadLetterRecord): Promise<boolean> {
    const entry = this.#entries.get(id)
    if (entry === undefined) return false
    this.#entries.set(id, { ...entry, record })
    return true
  }

  async get (id: string): Promise<DeadLetterEntry | undefined> {
    return this.#entries.get(id)
  }

  async list (query: DeadLetterQuery): Promise<DeadLetterPage> {
    const matches = query.topic === undefined ? undefined : compileFilter(query.topic)
    const newestFirst = [...this.#entries.values()].reverse()
    let start = 0
    if (query.cursor !== undefined) {
      const at = newestFirst.findIndex((e) => e.id === query.cursor)
      // an evicted or deleted cursor: the page starts over at the newest, never skips silently to nothing
      start = at === -1 ? 0 : at + 1
    }
    const items: DeadLetterEntry[] = []
    let next: string | undefined
    for (let i = start; i < newestFirst.length; i++) {
      const entry = newestFirst[i]
      if (entry === undefined) continue
      if (matches !== undefined && !matches(entry.record.data.topic)) continue
      if (query.reason !== undefined && entry.record.data.reason !== query.reason) continue
      if (items.length === query.limit) {
        next = items[items.length - 1]?.id
        break
      }
      items.push(entry)
    }
    return next === undefined ? { items } : { items, next }
  }

  async delete (id: string): Promise<boolean> {
    return this.#entries.delete(id)
  }
}
