import type { Redis } from 'ioredis'
import type { MQEmitter } from 'mqemitter'
import { unpack } from 'msgpackr'
import type { Logger } from '../logger.js'

type Message = Parameters<MQEmitter['emit']>[0]

/** Entries one read of the inbox takes; they are delivered before the next read. */
const READ_COUNT = 500
/** How long one blocking read of the inbox waits for entries, in ms. */
const READ_BLOCK_MS = 2000
/** Wait before reading again after a failed read, in ms. */
const RETRY_MS = 100

/**
 * One node's inbox stream, read from a cursor kept in memory: after a dropped connection
 * the read goes on from the same entry, so nothing sent meanwhile is missed. A batch is
 * delivered to this node's subscribers (the local emitter's callbacks) before the next
 * read, then trimmed, so the stream's length is what this node has yet to deliver.
 */
export class Inbox {
  /** Where an entry addressed to one member of a shared subscription goes (its `shareTarget` says which), instead of every subscriber. */
  onShared: ((message: Message, done: () => void) => void) | undefined
  #closed = false
  #reading: Promise<void> | undefined
  /** Settles when the inbox closes: a read that ioredis keeps for a reconnect is not waited for. */
  readonly #closing: Promise<undefined>
  #close: () => void = () => {}

  /**
   * @param reader a connection for the blocking read only
   * @param commands where the trims go
   */
  constructor (private readonly key: string, private readonly local: MQEmitter, private readonly reader: Redis, private readonly commands: Redis, private readonly log: Logger) {
    this.#closing = new Promise((resolve) => { this.#close = () => { resolve(undefined) } })
  }

  /** Start reading from the stream's first entry (the caller emptied it). */
  start (): void {
    this.#reading = this.#read()
  }

  async close (): Promise<void> {
    this.#closed = true
    this.#close()
    await this.#reading
  }

  async #read (): Promise<void> {
    let cursor = '0-0'
    while (!this.#closed) {
      let reply: Array<[Buffer, Array<[Buffer, Buffer[]]>]> | null
      try {
        reply = await Promise.race([this.reader.xreadBuffer('COUNT', READ_COUNT, 'BLOCK', READ_BLOCK_MS, 'STREAMS', this.key, cursor), this.#closing]) ?? null
      } catch (err: unknown) {
        if (this.#closed) return
        this.log.debug({ err: err instanceof Error ? err.message : String(err) }, 'cluster inbox read failed: reading again from the same entry')
        await new Promise((resolve) => { setTimeout(resolve, RETRY_MS).unref() })
        continue
      }
      const entries = reply?.[0]?.[1]
      if (entries === undefined || entries.length === 0) continue
      await Promise.all(entries.map(async ([, fields]) => { await this.#deliver(fields) }))
      cursor = entries[entries.length - 1]?.[0].toString() ?? cursor
      this.commands.xtrim(this.key, 'MINID', cursor).catch(() => { /* the next batch trims again */ })
    }
  }

  async #deliver (fields: readonly Buffer[]): Promise<void> {
    const encoded = fields[1]
    if (encoded === undefined) return
    let message: unknown
    try {
      message = unpack(encoded)
    } catch (err: unknown) {
      this.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'cluster inbox entry is not a message: skipped')
      return
    }
    if (!isMessage(message)) return
    const shared = this.onShared
    await new Promise<void>((resolve) => {
      if (shared !== undefined && Reflect.get(message, 'shareTarget') !== undefined) shared(message, resolve)
      else this.local.emit(message, () => { resolve() })
    })
  }
}

function isMessage (value: unknown): value is Message {
  return typeof value === 'object' && value !== null && typeof Reflect.get(value, 'topic') === 'string'
}
