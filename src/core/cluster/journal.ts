import type { Redis } from 'ioredis'
import { messageOf, type EventSummary } from '../errors/base.js'
import type { Logger } from '../logger.js'
import { journalKey, type ClusterCommands, type IdRange } from './scripts.js'

/** An accepted event as its journal entry keeps it: enough to publish it again. */
export interface JournalPacket {
  readonly topic: string
  readonly payload: Buffer
  readonly qos: 0 | 1 | 2
  readonly retain: boolean
  readonly clientId: string | null
  /** What the event's checks found it to be (its audit record says so again on a replay). */
  readonly event: EventSummary | undefined
}

/** An idempotency claim to take with the event's entry: the key, for `ttlMs`. */
export interface Claim {
  readonly key: string
  readonly ttlMs: number
}

/** What a commit made of one event: a duplicate (its claim was taken), claimed without an entry, or the entry's id. */
export type CommitResult = { readonly duplicate: true } | { readonly duplicate: false, readonly entry: string | undefined }

/** Publish a journal entry's event again, to everything an accepted event goes to; resolves once done. */
export type Replay = (packet: JournalPacket) => Promise<void>

export interface JournalOptions {
  readonly nodeId: string
  /** `redis.nodeTimeoutMs`: an entry not finished this long after it was written is taken for lost and published again. */
  readonly nodeTimeoutMs: number
  /** Counts each event published again from the journal (a duplicate its subscribers may see). */
  readonly onReplayed: () => void
  /** Replicas the entries must be on (`WAIT`) before a commit resolves; 0: the master's word is enough. */
  readonly waitReplicas: number
  /** `redis.outageHoldMs`: how long a commit waits for Redis (and the replicas) before it fails with `CommitTimeoutError`. */
  readonly holdMs: number
}

/** What `commit` tells its caller: an error (Redis refused, or did not answer in time), or the result. */
export type Committed = (err: unknown, result: CommitResult | undefined) => void

interface Pending {
  readonly claim: Claim | undefined
  readonly packet: JournalPacket | undefined
  readonly done: Committed
}

/** Entries one read of the journal takes when replaying. */
const PAGE = 200

/**
 * This node's write-ahead journal of accepted events, a Redis stream. An event that
 * will be acknowledged (QoS 1/2, HTTP) is appended there, together with its idempotency
 * claim, in one Lua step per event-loop turn: from then on the event is in Redis and
 * cannot be lost with this process. Once everything it goes to has it (subscribers'
 * queues, other nodes' inboxes, webhook jobs, the audit entry), its entry is deleted.
 *
 * What stays is finished again: at start-up whatever a former process of this node left,
 * on a heartbeat the entries of nodes this node reaped (moved here by the heartbeat
 * script), and every sweep the entries older than `nodeTimeoutMs` (an ack that never
 * reached its publisher, a reply lost with a connection). Finishing again is at least
 * once: subscribers may see an event twice, counted as replayed; never lose one.
 */
export class Journal {
  readonly #key: string
  #pending: Pending[] = []
  #done: string[] = []
  #scheduled = false
  #sweeping: Promise<void> | undefined
  #timer: NodeJS.Timeout | undefined
  #replay: Replay | undefined
  #closed = false

  constructor (private readonly conn: Redis, private readonly commands: ClusterCommands, private readonly options: JournalOptions, private readonly log: Logger) {
    this.#key = journalKey(options.nodeId)
  }

  /**
   * Take `claim` and append the event (`packet`, when it will be acknowledged), with the
   * rest of this turn's events; `done` once Redis has answered. A callback, not a
   * promise: this is on the path of every claimed event.
   */
  commit (claim: Claim | undefined, packet: JournalPacket | undefined, done: Committed): void {
    this.#pending.push({ claim, packet, done })
    this.#schedule()
  }

  /** The event of entry `id` reached everything it goes to: its entry goes (with this turn's others). */
  complete (id: string): void {
    this.#done.push(id)
    this.#schedule()
  }

  /** Finish what a former process of this node left, then sweep now and then. */
  async start (replay: Replay): Promise<void> {
    this.#replay = replay
    await this.#replayRange('-', '+')
    const every = Math.max(500, Math.floor(this.options.nodeTimeoutMs / 2))
    this.#timer = setInterval(() => { this.#sweep(undefined) }, every).unref()
  }

  /** Entries moved here from reaped nodes: finish them now. */
  takeOver (range: IdRange): void {
    this.#sweep(range)
  }

  async stop (): Promise<void> {
    this.#closed = true
    clearInterval(this.#timer)
    this.#flush()
    await this.#sweeping
  }

  #schedule (): void {
    if (this.#scheduled) return
    this.#scheduled = true
    setImmediate(() => { this.#flush() })
  }

  #flush (): void {
    this.#scheduled = false
    if (this.#done.length > 0) {
      const ids = this.#done
      this.#done = []
      this.conn.xdel(this.#key, ...ids).catch((err: unknown) => {
        // left in the journal: a later sweep publishes them again, at least once
        this.log.debug({ err: messageOf(err), entries: ids.length }, 'finished journal entries not deleted')
      })
    }
    if (this.#pending.length === 0) return
    const batch = this.#pending
    this.#pending = []
    const args: Array<string | number | Buffer> = []
    for (const { claim, packet } of batch) {
      args.push(claim?.key ?? '', claim?.ttlMs ?? 0)
      // the entry's fields as they are: the payload's bytes, no encoding of it per event
      if (packet === undefined) args.push('', '', '')
      else args.push(packet.topic, packet.payload, JSON.stringify([packet.qos, packet.retain, packet.clientId, packet.event ?? null]))
    }
    // one deadline for the batch, not a timer per event
    let late = false
    const timer = setTimeout(() => {
      late = true
      const err = new CommitTimeoutError(this.options.holdMs)
      for (const pending of batch) this.#tell(pending, err, undefined)
    }, this.options.holdMs)
    this.#committed(args).then((results) => {
      clearTimeout(timer)
      // too late: the entries written anyway are routed by a later sweep
      if (late) return
      batch.forEach((pending, i) => {
        const result = results[i]
        this.#tell(pending, undefined, result === 0 ? DUPLICATE : { duplicate: false, entry: typeof result === 'string' ? result : undefined })
      })
    }, (err: unknown) => {
      clearTimeout(timer)
      if (late) return
      for (const pending of batch) this.#tell(pending, err, undefined)
    })
  }

  /** One event's answer; a caller that throws does not keep the others of its batch from theirs. */
  #tell (pending: Pending, err: unknown, result: CommitResult | undefined): void {
    try {
      pending.done(err, result)
    } catch (thrown: unknown) {
      this.log.error({ err: messageOf(thrown) }, 'a commit\'s caller threw')
    }
  }

  /**
   * The commit script's replies; with `waitReplicas`, once the replicas have it too. WAIT
   * covers what this connection wrote before it: the entries. What the routing writes
   * after (on other connections) needs no WAIT: a replica that lacks it also lacks the
   * entry's deletion, written after it, and a sweep on the new master routes the entry again.
   */
  async #committed (args: Array<string | number | Buffer>): Promise<Array<string | number>> {
    const results = await this.commands.commit(this.options.nodeId, args)
    const wanted = this.options.waitReplicas
    if (wanted > 0) {
      const got = await this.conn.wait(wanted, this.options.holdMs)
      if (got < wanted) throw new Error(`the journal entries reached ${got} of redis.waitReplicas (${wanted}) replicas within ${this.options.holdMs} ms`)
    }
    return results
  }

  /** Replay `range` (entries taken over), or the entries older than `nodeTimeoutMs`; one sweep at a time. */
  #sweep (range: IdRange | undefined): void {
    if (this.#closed || this.#replay === undefined) return
    const previous = this.#sweeping ?? Promise.resolve()
    const next = previous.then(async () => {
      if (this.#closed) return
      if (range !== undefined) {
        await this.#replayRange(range.first, range.last)
        return
      }
      const [seconds = '0', micros = '0'] = await this.conn.time()
      const cutoff = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000) - this.options.nodeTimeoutMs
      await this.#replayRange('-', `${cutoff}-0`)
    }).catch((err: unknown) => {
      this.log.warn({ err: messageOf(err) }, 'journal sweep failed: tried again at the next one')
    })
    this.#sweeping = next
    void next.finally(() => { if (this.#sweeping === next) this.#sweeping = undefined })
  }

  async #replayRange (from: string, to: string): Promise<void> {
    const replay = this.#replay
    if (replay === undefined) return
    let start = from
    for (;;) {
      const entries = await this.conn.xrangeBuffer(this.#key, start, to, 'COUNT', PAGE)
      for (const [rawId, fields] of entries) {
        const id = rawId.toString()
        const packet = packetOf(fields)
        if (packet === undefined) {
          this.log.warn({ entry: id }, 'journal entry unreadable: dropped')
        } else {
          try {
            await replay(packet)
          } catch (err: unknown) {
            // left for the next sweep; the entries after it are not held up by it
            this.log.warn({ err: messageOf(err), entry: id, topic: packet.topic }, 'journal entry not published again: tried at the next sweep')
            continue
          }
          this.options.onReplayed()
          this.log.info({ entry: id, topic: packet.topic }, 'journal entry published again')
        }
        await this.conn.xdel(this.#key, id)
      }
      if (entries.length < PAGE || this.#closed) return
      const last = entries[entries.length - 1]?.[0]?.toString()
      if (last === undefined) return
      start = `(${last}`
    }
  }
}

const DUPLICATE: CommitResult = { duplicate: true }

/** Redis did not answer a commit within `redis.outageHoldMs`. */
export class CommitTimeoutError extends Error {
  constructor (readonly holdMs: number) {
    super(`redis did not take the event within redis.outageHoldMs (${holdMs} ms)`)
  }
}

/** The packet a journal entry holds (fields `t` topic, `p` payload, `m` JSON of qos, retain, client id, event summary), or `undefined` when unreadable. */
function packetOf (fields: Buffer[]): JournalPacket | undefined {
  const field = (name: string): Buffer | undefined => {
    for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i]?.toString() === name) return fields[i + 1]
    return undefined
  }
  const topic = field('t')?.toString()
  const payload = field('p')
  const meta: unknown = parseMeta(field('m'))
  if (topic === undefined || topic === '' || payload === undefined || !Array.isArray(meta)) return undefined
  const [q, r, c, e] = meta as unknown[]
  return {
    topic,
    payload,
    qos: q === 1 || q === 2 ? q : 0,
    retain: r === true,
    clientId: typeof c === 'string' ? c : null,
    // written by commit() from the attempt's summary
    event: typeof e === 'object' && e !== null ? e as EventSummary : undefined
  }
}

function parseMeta (raw: Buffer | undefined): unknown {
  try {
    return raw === undefined ? undefined : JSON.parse(raw.toString())
  } catch {
    return undefined
  }
}
