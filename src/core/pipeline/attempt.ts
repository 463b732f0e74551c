import type { Client } from 'aedes'
import type { BrokerError, EventSummary } from '../errors.js'
import type { Logger } from '../logger.js'
import type { Identity, Origin, PublishAttempt } from '../context.js'

/**
 * The read-only view of a PUBLISH that authorizePublish handlers get. The child
 * logger is made on first use: most publishes are never logged.
 */
export class Attempt implements PublishAttempt {
  #log: Logger | undefined
  readonly #parent: Logger
  event: EventSummary | undefined = undefined
  /** The claim a handler asked the commit to take (`claim`). */
  claimed: { readonly key: string, readonly ttlMs: number, readonly taken: () => BrokerError } | undefined = undefined
  /** Durable work the acknowledgement waits for (`keepUntil`). */
  kept: Array<Promise<unknown>> | undefined = undefined
  /** The MQTT client that sent it, to publish it as that client's; `null` for HTTP and the broker's own. */
  source: Client | null = null
  /** Whether this node commits accepted events (a journal in Redis): set by the pipeline. */
  commits = false

  constructor (
    readonly topic: string,
    readonly payload: Buffer,
    readonly qos: 0 | 1 | 2,
    readonly retain: boolean,
    readonly clientId: string | null,
    readonly identity: Identity | undefined,
    readonly origin: Origin,
    parent: Logger,
    readonly replayOf: string | undefined
  ) {
    this.#parent = parent
  }

  describe (event: EventSummary): void {
    this.event = event
  }

  claim (key: string, ttlMs: number, taken: () => BrokerError): boolean {
    if (!this.commits) return false
    this.claimed = { key, ttlMs, taken }
    return true
  }

  keepUntil (work: Promise<unknown>): void {
    if (this.commits && this.acked) (this.kept ??= []).push(work)
  }

  /** Whether its publisher is told it was taken: a QoS 1/2 PUBACK or PUBREC, or an HTTP 202 (whatever the `qos` it asked for). */
  get acked (): boolean {
    return this.qos > 0 || this.origin === 'http'
  }

  get log (): Logger {
    this.#log ??= this.#parent.child({ clientId: this.clientId, topic: this.topic })
    return this.#log
  }
}

/** A packet's payload as bytes: aedes' own publishes may carry a string. */
export function payloadOf (packet: { readonly payload: Buffer | string }): Buffer {
  return typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload
}
