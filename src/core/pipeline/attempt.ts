import type { EventSummary } from '../errors.js'
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

  get log (): Logger {
    this.#log ??= this.#parent.child({ clientId: this.clientId, topic: this.topic })
    return this.#log
  }
}

/** A packet's payload as bytes: aedes' own publishes may carry a string. */
export function payloadOf (packet: { readonly payload: Buffer | string }): Buffer {
  return typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload
}
