import type { Duplex } from 'node:stream'

/** What the guard saw when it refused a packet. */
export interface OversizeInfo {
  /** Payload size announced by the PUBLISH header, in bytes (remaining length − topic − packet id). */
  readonly payloadBytes: number
  /** The limit it exceeded, in bytes. */
  readonly limit: number
  /** The topic, only when its bytes were already in the chunk that completed the header (never waited for). */
  readonly topic?: string
}

/** Options of {@link guardPublishSize}. */
export interface PublishSizeGuardOptions {
  /** Largest PUBLISH payload let through, in bytes; the broker passes `limits.maxPayloadBytes` (default 262144). */
  readonly maxPayloadBytes: number
  /**
   * Called once, synchronously inside `read`, when a PUBLISH is refused, before the stream is destroyed
   * (so `remoteAddress` is still readable). Must not throw: an error propagates out of `read` into aedes
   * (the stream is destroyed all the same).
   */
  readonly onOversize: (info: OversizeInfo) => void
}

const PUBLISH = 3

/**
 * Where the walker is inside the current packet: `fixed-header` (type and flags), `remaining-length`
 * (1–4 byte varint), `topic-high` and `topic-low` (PUBLISH only: the topic length, decided on its low
 * byte), `skip` (bytes not inspected), `stopped` (malformed framing or a packet already refused:
 * everything passes uninspected).
 */
type Step = 'fixed-header' | 'remaining-length' | 'topic-high' | 'topic-low' | 'skip' | 'stopped'

/**
 * Walks MQTT 3.1.1 packet boundaries over a byte stream cut into arbitrary chunks and
 * reports the first PUBLISH whose payload is over the limit. Only header bytes are looked
 * at (fixed header, remaining length, topic length: at most 7 per packet); the rest of each
 * packet is skipped by arithmetic, so a chunk of payload costs O(1). Nothing is buffered or copied.
 *
 * The payload size is announced by the header: remaining length − 2 − topic length − 2 if QoS > 0
 * [MQTT-3.3.2, 3.3.3]. A PUBLISH too short to hold that is left to the parser, which refuses it.
 */
export class PublishSizeWalker {
  readonly #limit: number
  #step: Step = 'fixed-header'
  #type = 0
  #qos = 0
  #remaining = 0
  #multiplier = 1
  #lengthBytes = 0
  #topicLengthHigh = 0
  #skip = 0

  /** @param maxPayloadBytes largest payload let through, in bytes */
  constructor (maxPayloadBytes: number) {
    this.#limit = maxPayloadBytes
  }

  /** False once the walker stopped inspecting: after a refusal or on malformed framing. */
  get inspecting (): boolean {
    return this.#step !== 'stopped'
  }

  /**
   * Feed the next bytes of the stream. Returns what was refused when this chunk completes the header
   * of an oversized PUBLISH (the walker then stops: the connection is going away), otherwise undefined.
   */
  push (chunk: Buffer): OversizeInfo | undefined {
    const end = chunk.length
    let i = 0
    while (i < end) {
      if (this.#step === 'skip') {
        if (this.#skip > end - i) {
          this.#skip -= end - i
          return undefined
        }
        i += this.#skip
        this.#skip = 0
        this.#step = 'fixed-header'
        continue
      }
      if (this.#step === 'stopped') return undefined
      const byte = chunk[i]
      if (byte === undefined) return undefined // i < end: not reached
      i++
      switch (this.#step) {
        case 'fixed-header':
          this.#type = byte >> 4
          this.#qos = (byte >> 1) & 0x03
          this.#remaining = 0
          this.#multiplier = 1
          this.#lengthBytes = 0
          this.#step = 'remaining-length'
          break
        case 'remaining-length':
          this.#remaining += (byte & 0x7f) * this.#multiplier
          this.#multiplier *= 128
          this.#lengthBytes++
          if ((byte & 0x80) === 0) this.#lengthDone()
          // a 5th length byte is malformed [MQTT-2.2.3]: mqtt-packet's parser errors and aedes
          // closes the connection; without boundaries there is nothing more to inspect
          else if (this.#lengthBytes === 4) this.#step = 'stopped'
          break
        case 'topic-high':
          this.#topicLengthHigh = byte
          this.#step = 'topic-low'
          break
        case 'topic-low': {
          const topicLength = this.#topicLengthHigh * 256 + byte
          // QoS 3 is malformed too, but the boundaries hold: count a packet id so as not to depend on the parser
          const payloadBytes = this.#remaining - 2 - topicLength - (this.#qos > 0 ? 2 : 0)
          if (payloadBytes > this.#limit) {
            this.#step = 'stopped'
            const topicEnd = i + topicLength
            return topicEnd <= end
              ? { payloadBytes, limit: this.#limit, topic: chunk.toString('utf8', i, topicEnd) }
              : { payloadBytes, limit: this.#limit }
          }
          this.#skip = this.#remaining - 2
          this.#step = 'skip'
          break
        }
      }
    }
    return undefined
  }

  #lengthDone (): void {
    if (this.#type === PUBLISH && this.#remaining >= 2) {
      this.#step = 'topic-high'
    } else {
      // other packets, and a PUBLISH with no room for a topic length (the parser refuses it)
      this.#skip = this.#remaining
      this.#step = 'skip'
    }
  }
}

/**
 * Watch the MQTT byte stream Aedes will read from `stream` (a net.Socket, tls.TLSSocket or the Duplex of ws' createWebSocketStream)
 * and refuse PUBLISH packets whose payload exceeds `maxPayloadBytes`: call `onOversize` once, destroy the stream, and never hand
 * the offending bytes to the reader. Zero-copy and no extra stream layer: it wraps the stream's own `read` method.
 *
 * Call it before `aedes.handle(stream)`. The refusal is decided as soon as the header's first 4–7 bytes
 * have been read, so over TCP and TLS a 200 MB PUBLISH costs the broker about one socket read of payload
 * (the readable highWaterMark, 16 KiB on Node 20, or one 64 KiB libuv read). Over WebSocket, ws assembles
 * each WebSocket message whole before the stream sees it: there the bound is ws' `maxPayload`.
 * What the guard withholds is the chunk that completes the oversized header; up to 6 header bytes that came
 * in earlier chunks were already passed on and sit in mqtt-packet's parser, which is dropped with the connection.
 * Other packets in the refused chunk are dropped with it: no PUBACK was sent for them, and a QoS 0 message
 * may be lost, which QoS 0 allows.
 *
 * It guards readers that pull with `read()`, as aedes does (a 'readable' listener keeps the stream paused).
 * A 'data' listener in flowing mode gets chunks before `read` returns them, or without `read` at all, so
 * the guard would still destroy the stream but not hide the chunk. Chunks that are not Buffers (a stream with
 * `setEncoding`) pass uninspected; aedes never sets one. All three transports hand out Buffers: the ws stream
 * is a byte-mode Duplex (`objectMode: false`) fed with each message as a Buffer.
 */
export function guardPublishSize (stream: Duplex, options: PublishSizeGuardOptions): void {
  // Why not a Transform in front of aedes: a Transform is one-way, and aedes writes CONNACK, PUBLISH
  // and the rest to the same object it reads from, so it would need a Duplex joining the Transform
  // and the socket's write side: one more stream, callback and buffer on every write to every client,
  // and close/error/destroy to forward both ways. Wrapping `read` costs one call per read, only on the
  // receiving side, and keeps the object aedes gets the socket itself (bytesRead, remoteAddress, setNoDelay).
  const walker = new PublishSizeWalker(options.maxPayloadBytes)
  const original = stream.read.bind(stream)
  let refused = false
  stream.read = function guardedRead (size?: number): unknown {
    if (refused) return null
    const chunk: unknown = original(size)
    if (!Buffer.isBuffer(chunk) || !walker.inspecting) return chunk
    const oversize = walker.push(chunk)
    if (oversize === undefined) return chunk
    refused = true
    try {
      options.onOversize(oversize)
    } finally {
      // no error: nothing on the wire explains it (MQTT 3.1.1 has no reason code), and aedes would
      // report it as a client error; onOversize is where the refusal is reported
      stream.destroy()
    }
    return null
  }
}
