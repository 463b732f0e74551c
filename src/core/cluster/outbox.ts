import type { Redis } from 'ioredis'
import { LogSampler } from '../log-sampler.js'
import { messageOf } from '../errors/base.js'
import type { Logger } from '../logger.js'
import { inboxKey } from './scripts.js'

/** How often a node whose inbox is over the bound is asked again for its length, in ms. */
const BACKLOG_POLL_MS = 20
/** One line per behind node per this many ms. */
const BEHIND_LOG_MS = 10_000

export interface OutboxOptions {
  /** `redis.maxRouteBacklog`: messages waiting in one node's inbox before publishers sending it more wait. */
  readonly maxBacklog: number
  /** Told when a node's inbox passes `maxBacklog` (publishes to it start to wait). */
  readonly onBehind?: () => void
}

interface Target {
  readonly key: string
  /** Entries waiting for this turn's write, with their callbacks. */
  entries: Buffer[]
  callbacks: Array<(err?: Error) => void>
  /** Callbacks held while the node's inbox is over the bound. */
  held: Array<(err?: Error) => void>
  behind: boolean
  poll: NodeJS.Timeout | undefined
}

/**
 * Writes to the other nodes' inboxes: the messages of one event-loop turn for one node
 * go as one pipeline (the entries and the inbox's length), one round trip.
 */
export class Outbox {
  readonly #targets = new Map<string, Target>()
  readonly #behindLog = new LogSampler(BEHIND_LOG_MS)
  #scheduled = false
  #closed = false

  constructor (private readonly conn: Redis, private readonly options: OutboxOptions, private readonly log: Logger) {}

  send (node: string, entry: Buffer, done: (err?: Error) => void): void {
    let target = this.#targets.get(node)
    if (target === undefined) this.#targets.set(node, target = { key: inboxKey(node), entries: [], callbacks: [], held: [], behind: false, poll: undefined })
    target.entries.push(entry)
    target.callbacks.push(done)
    if (this.#scheduled) return
    this.#scheduled = true
    setImmediate(() => { this.#flush() })
  }

  /** The node is gone: nobody waits for its inbox any more. */
  forget (node: string): void {
    const target = this.#targets.get(node)
    if (target === undefined) return
    this.#targets.delete(node)
    this.#release(target)
  }

  close (): void {
    this.#closed = true
    for (const node of [...this.#targets.keys()]) this.forget(node)
  }

  #flush (): void {
    this.#scheduled = false
    for (const target of this.#targets.values()) {
      if (target.entries.length === 0) continue
      const { entries, callbacks } = target
      target.entries = []
      target.callbacks = []
      const pipeline = this.conn.pipeline()
      for (const entry of entries) pipeline.xadd(target.key, '*', 'm', entry)
      pipeline.xlen(target.key)
      pipeline.exec().then((results) => {
        // a command Redis refused (out of memory, a replica after a failover): those messages are not in the inbox
        const refused = results?.find(([err]) => err !== null)?.[0] ?? (results === null ? new Error('the pipeline was discarded') : undefined)
        if (refused !== undefined && refused !== null) {
          this.#notWritten(target, entries.length, callbacks, refused)
          return
        }
        const length = Number(results?.[results.length - 1]?.[1] ?? 0)
        this.#written(target, callbacks, length)
      }, (err: unknown) => {
        this.#notWritten(target, entries.length, callbacks, err instanceof Error ? err : new Error(messageOf(err)))
      })
    }
  }

  /** The publishes fail: not acked, their publishers send them again (a journaled event is routed again by the sweep). */
  #notWritten (target: Target, messages: number, callbacks: Array<(err?: Error) => void>, err: Error): void {
    this.log.warn({ err: messageOf(err), inbox: target.key, messages }, 'cluster messages not written to a node\'s inbox')
    for (const callback of callbacks) callback(err)
  }

  #written (target: Target, callbacks: Array<(err?: Error) => void>, length: number): void {
    if (!target.behind && length <= this.options.maxBacklog) {
      for (const callback of callbacks) callback()
      return
    }
    target.held.push(...callbacks)
    if (target.behind || this.#closed) {
      if (this.#closed) this.#release(target)
      return
    }
    target.behind = true
    this.options.onBehind?.()
    const suppressed = this.#behindLog.take(target.key)
    if (suppressed !== undefined) this.log.warn({ inbox: target.key, length, maxBacklog: this.options.maxBacklog, suppressed }, 'a node is behind on its cluster inbox: publishes routed to it wait')
    const check = (): void => {
      this.conn.xlen(target.key).then((now) => {
        // read down to half, so publishers are not let go and held again every poll
        if (now <= this.options.maxBacklog / 2 || this.#closed) this.#release(target)
        else target.poll = setTimeout(check, BACKLOG_POLL_MS)
      }, () => { target.poll = setTimeout(check, BACKLOG_POLL_MS) })
    }
    target.poll = setTimeout(check, BACKLOG_POLL_MS)
  }

  #release (target: Target): void {
    clearTimeout(target.poll)
    target.poll = undefined
    target.behind = false
    const held = target.held
    target.held = []
    for (const callback of held) callback()
  }
}
