import { EventRejectedError, PublishUnansweredError, type RejectionRecord } from './errors.js'

/** What the broker answered for an accepted event: taken now, or a duplicate of one it took before. */
export interface Published {
  readonly id: string
  readonly duplicate: boolean
}

/** One publish waiting for its PUBACK; the record of its refusal may come first. */
export interface Pending {
  readonly id: string
  readonly answer: Promise<Published>
  resolve: (published: Published) => void
  reject: (err: Error) => void
  /** What `$rejections` said of it before its PUBACK. */
  told: RejectionRecord | undefined
  timer: NodeJS.Timeout | undefined
  /** The callback its PUBACK calls, once handed to the connection (held until `$rejections` is subscribed on it). */
  answered: ((err?: Error) => void) | undefined
}

/**
 * The publishes a publisher waits to hear of, by event id. Several publishes of one id
 * may be under way (an outbox row sent again): a record is the first sent one's that
 * has none yet, as the broker answers one client's publishes in order.
 */
export class Answers {
  readonly #pending = new Map<string, Pending[]>()

  /** A new publish of `id`, answered `PublishUnansweredError` after `timeoutMs`. */
  open (id: string, timeoutMs: number): Pending {
    let settle: Pick<Pending, 'resolve' | 'reject'> = { resolve: () => {}, reject: () => {} }
    const answer = new Promise<Published>((resolve, reject) => { settle = { resolve, reject } })
    const entry: Pending = { id, answer, ...settle, told: undefined, timer: undefined, answered: undefined }
    const list = this.#pending.get(id)
    if (list === undefined) this.#pending.set(id, [entry])
    else list.push(entry)
    entry.timer = setTimeout(() => { this.settle(entry, new PublishUnansweredError(id, `no answer within ${timeoutMs} ms`)) }, timeoutMs)
    return entry
  }

  /** Whether `entry` still waits for its answer (not timed out meanwhile). */
  waiting (entry: Pending): boolean {
    return this.#pending.get(entry.id)?.includes(entry) === true
  }

  /** `entry` goes on the connection: the callback its PUBACK calls. */
  sent (entry: Pending): (err?: Error) => void {
    entry.answered = (err?: Error) => {
      if (err !== undefined && err !== null) this.settle(entry, new PublishUnansweredError(entry.id, `not sent: ${err.message}`))
      else this.settle(entry, entry.told === undefined ? { id: entry.id, duplicate: false } : outcomeOf(entry.id, entry.told))
    }
    return entry.answered
  }

  /** A record heard on `$rejections`: kept for the publish of its event, until its PUBACK. */
  told (payload: Buffer): void {
    const record = parseRecord(payload)
    const id = record === undefined ? undefined : originalId(record)
    if (record === undefined || id === undefined) return
    const waiting = this.#pending.get(id)?.find((p) => p.answered !== undefined && p.told === undefined)
    if (waiting !== undefined) waiting.told = record
  }

  /**
   * The connection closed: every publish sent on it and not answered is answered now. A
   * record heard for one is its answer (a refusal that disconnects, `onInvalid:
   * "disconnect"`, tells it first); the others' outcome is unknown, for the caller to
   * publish again. Returns their PUBACK callbacks, by which the client's store finds them.
   */
  giveUp (): Set<unknown> {
    const given = [...this.#pending.values()].flat().filter((p) => p.answered !== undefined)
    for (const entry of given) this.settle(entry, entry.told === undefined ? new PublishUnansweredError(entry.id, 'the connection closed before the broker answered') : outcomeOf(entry.id, entry.told))
    return new Set(given.map((p) => p.answered))
  }

  settle (entry: Pending, outcome: Error | Published): void {
    clearTimeout(entry.timer)
    const list = this.#pending.get(entry.id)
    const at = list?.indexOf(entry) ?? -1
    if (list === undefined || at < 0) return
    list.splice(at, 1)
    if (list.length === 0) this.#pending.delete(entry.id)
    if (outcome instanceof Error) entry.reject(outcome)
    else entry.resolve(outcome)
  }
}

/** What a record heard before the answer says: a duplicate of an accepted event, or a refusal. */
function outcomeOf (id: string, told: RejectionRecord): Published | EventRejectedError {
  return told.data.reason === 'duplicate' ? { id, duplicate: true } : new EventRejectedError(id, told)
}

function parseRecord (payload: Buffer): RejectionRecord | undefined {
  try {
    const record: unknown = JSON.parse(payload.toString('utf8'))
    if (typeof record !== 'object' || record === null) return undefined
    const data: unknown = Reflect.get(record, 'data')
    if (typeof data !== 'object' || data === null || typeof Reflect.get(data, 'reason') !== 'string') return undefined
    return record as RejectionRecord
  } catch {
    return undefined
  }
}

/** The refused event's id: the record keeps the original event as `payload` when it was JSON. */
function originalId (record: RejectionRecord): string | undefined {
  const payload = record.data.payload
  if (typeof payload !== 'object' || payload === null) return undefined
  const id: unknown = Reflect.get(payload, 'id')
  return typeof id === 'string' ? id : undefined
}
