/**
 * Just enough MQTT 3.1.1 framing for the load generator: it counts PUBLISH
 * packets by walking fixed headers instead of parsing them, so that counting
 * costs far less CPU than the broker spends producing them.
 */

/** Control packet types, the high nibble of the first fixed-header byte [MQTT-2.2.1]. */
export const PacketType = {
  CONNACK: 2,
  PUBLISH: 3,
  PUBACK: 4,
  SUBACK: 9
} as const

/** Called with each complete packet that is not a PUBLISH: its type and variable header + payload. */
export type ControlPacketHandler = (type: number, body: Buffer) => void

/** Called with each complete PUBLISH packet's variable header + payload, when asked for. */
export type PublishHandler = (body: Buffer) => void

/**
 * Splits an MQTT byte stream into packets by their fixed headers (type nibble +
 * remaining-length varint), across chunk boundaries. PUBLISH bodies are skipped
 * and counted, unless an `onPublish` handler wants them (the paced load, at a rate
 * where looking into each costs nothing); PUBACKs (a QoS 1 publisher's) are counted
 * and never handed on; other packets, all small, are collected and handed to `onControl`.
 */
export class FrameWalker {
  /** Complete PUBLISH packets seen so far. */
  publishes = 0
  /** Complete PUBACK packets seen so far. */
  pubacks = 0
  /** Bytes pushed so far. */
  bytes = 0
  readonly #onControl: ControlPacketHandler
  readonly #onPublish: PublishHandler | undefined
  /** Reading the first header byte (`type`), the remaining length (`length`), or a body (`body`). */
  #state: 'type' | 'length' | 'body' = 'type'
  #type = 0
  #length = 0
  #multiplier = 1
  /** Body bytes still to come for the current packet. */
  #left = 0
  /** Body chunks of the current control packet; PUBLISH bodies are not kept. */
  #parts: Buffer[] = []

  constructor (onControl: ControlPacketHandler, onPublish?: PublishHandler) {
    this.#onControl = onControl
    this.#onPublish = onPublish
  }

  /** Feed the next chunk read from the socket. Throws on a malformed remaining length. */
  push (chunk: Buffer): void {
    this.bytes += chunk.length
    let i = 0
    while (i < chunk.length) {
      if (this.#state === 'body') {
        const n = Math.min(this.#left, chunk.length - i)
        if (this.#keepsBody()) this.#parts.push(chunk.subarray(i, i + n))
        i += n
        this.#left -= n
        if (this.#left === 0) this.#finish()
        continue
      }
      const byte = chunk[i++] ?? 0
      if (this.#state === 'type') {
        this.#type = byte >> 4
        this.#length = 0
        this.#multiplier = 1
        this.#state = 'length'
        continue
      }
      this.#length += (byte & 0x7f) * this.#multiplier
      if ((byte & 0x80) === 0) {
        this.#left = this.#length
        if (this.#left === 0) this.#finish()
        else this.#state = 'body'
      } else if (this.#multiplier === 128 ** 3) {
        throw new RangeError('remaining length longer than 4 bytes [MQTT-2.2.3]')
      } else {
        this.#multiplier *= 128
      }
    }
  }

  /** Whether the current packet's body is collected: not for PUBACK, nor for PUBLISH without `onPublish`. */
  #keepsBody (): boolean {
    if (this.#type === PacketType.PUBLISH) return this.#onPublish !== undefined
    return this.#type !== PacketType.PUBACK
  }

  #finish (): void {
    this.#state = 'type'
    if (this.#type === PacketType.PUBACK) {
      this.pubacks++
      return
    }
    if (this.#type === PacketType.PUBLISH) {
      this.publishes++
      if (this.#onPublish === undefined) return
    }
    const body = Buffer.concat(this.#parts)
    this.#parts = []
    if (this.#type === PacketType.PUBLISH) this.#onPublish?.(body)
    else this.#onControl(this.#type, body)
  }
}
