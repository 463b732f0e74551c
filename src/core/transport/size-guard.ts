import type { Duplex } from 'node:stream'

/** What the guard saw when it refused a PUBLISH on its payload size. */
export interface OversizeInfo {
  /** Payload size announced by the PUBLISH header, in bytes (remaining length − topic − packet id). */
  readonly payloadBytes: number
  /** The limit it exceeded, in bytes. */
  readonly limit: number
  /** The topic, only when its bytes were already in the chunk that completed the header (never waited for). */
  readonly topic?: string
}

/**
 * The limits enforced from packet headers besides the PUBLISH payload, named as the `limit` label of
 * `ce_broker_limit_hits_total`: `packet_bytes` (`limits.maxPacketBytes`), `connect_packet_bytes`
 * (`limits.maxConnectPacketBytes`), `filters_per_packet` (`limits.maxFiltersPerPacket`).
 */
export type PacketLimit = 'packet_bytes' | 'connect_packet_bytes' | 'filters_per_packet'

/** What the guard saw when it refused a packet on a {@link PacketLimit}. */
export interface PacketRefusal {
  readonly limit: PacketLimit
  /** The packet's type as mqtt-packet names it (`connect`, `subscribe`, …). */
  readonly packet: string
  /** Remaining length announced by the header, in bytes: the packet less its 2–5 byte fixed header. */
  readonly bytes: number
  /** The limit's value: bytes, or filters for `filters_per_packet`. */
  readonly max: number
  /** `filters_per_packet` only: filters counted when it was refused (`max` + 1; the rest were never looked at). */
  readonly filters?: number
}

/** The limits a {@link PacketWalker} enforces; the broker passes the `limits.*` of the same names. */
export interface PacketLimits {
  /** Largest PUBLISH payload let through, in bytes. Default in config 262144. */
  readonly maxPayloadBytes: number
  /** Largest remaining length of a packet other than PUBLISH, in bytes. Default in config 327680. */
  readonly maxPacketBytes: number
  /** Largest remaining length of any packet, PUBLISH included, until `accept()`, in bytes. Default in config 65536. */
  readonly maxConnectPacketBytes: number
  /** Most topic filters in one SUBSCRIBE or UNSUBSCRIBE. Default in config 100. */
  readonly maxFiltersPerPacket: number
}

/** Options of {@link guardPacketSize}. */
export interface PacketGuardOptions extends PacketLimits {
  /**
   * Called once, synchronously inside `read`, when a PUBLISH payload is over `maxPayloadBytes`, before
   * the stream is destroyed (so `remoteAddress` is still readable). Must not throw: an error propagates
   * out of `read` into aedes (the stream is destroyed all the same).
   */
  readonly onOversize: (info: OversizeInfo) => void
  /** Called like `onOversize` (once, before the destroy, must not throw) when a packet is refused on a {@link PacketLimit}. */
  readonly onRefused: (refusal: PacketRefusal) => void
}

/** Handle on a guarded stream. */
export interface PacketGuard {
  /**
   * The client's CONNECT was accepted (CONNACK 0 written): from the next packet header on, the cap is
   * `maxPacketBytes` (and the payload limit for PUBLISH) instead of `maxConnectPacketBytes`. Idempotent.
   */
  accepted: () => void
}

const PUBLISH = 3
const SUBSCRIBE = 8
const UNSUBSCRIBE = 10
/** mqtt-packet's `cmd` names, by packet type [MQTT-2.2.1]. */
const PACKET_NAMES = ['reserved', 'connect', 'connack', 'publish', 'puback', 'pubrec', 'pubrel', 'pubcomp', 'subscribe', 'suback', 'unsubscribe', 'unsuback', 'pingreq', 'pingresp', 'disconnect', 'auth'] as const

/**
 * Where the walker is inside the current packet: `fixed-header` (type and flags), `remaining-length`
 * (1–4 byte varint), `topic-high` and `topic-low` (PUBLISH only: the topic length, decided on its low
 * byte), `filter-high` and `filter-low` (SUBSCRIBE and UNSUBSCRIBE: the length of the next topic filter),
 * `skip` (bytes not inspected, then `#afterSkip`), `stopped` (malformed framing or a packet already
 * refused: everything passes uninspected).
 */
type Step = 'fixed-header' | 'remaining-length' | 'topic-high' | 'topic-low' | 'filter-high' | 'filter-low' | 'skip' | 'stopped'

/**
 * Walks MQTT 3.1.1 packet boundaries over a byte stream cut into arbitrary chunks and reports the
 * first packet over a limit, decided from its header:
 * - any packet whose remaining length is over `maxConnectPacketBytes` until {@link PacketWalker.accept};
 * - a packet other than PUBLISH whose remaining length is over `maxPacketBytes`;
 * - a PUBLISH whose payload is over `maxPayloadBytes`: remaining length − 2 − topic length − 2 if
 *   QoS > 0 [MQTT-3.3.2, 3.3.3]; a PUBLISH too short to hold that is left to the parser, which refuses it;
 * - a SUBSCRIBE or UNSUBSCRIBE with more than `maxFiltersPerPacket` topic filters, refused at the
 *   length of the first filter too many, before the rest of the packet arrives.
 *
 * Only header bytes are looked at (fixed header, remaining length, topic length: at most 7 per packet),
 * plus 2 bytes per filter of a SUBSCRIBE or UNSUBSCRIBE; everything else is skipped by arithmetic, so a
 * chunk costs O(the header bytes in it). Nothing is buffered or copied. Framing errors it can see (a
 * fifth length byte, a filter running past the packet end) are left to mqtt-packet's parser, which
 * refuses them, and aedes closes the connection.
 */
export class PacketWalker {
  readonly #limits: PacketLimits
  #accepted = false
  #step: Step = 'fixed-header'
  #type = 0
  #qos = 0
  #remaining = 0
  #multiplier = 1
  #lengthBytes = 0
  #topicLengthHigh = 0
  #skip = 0
  #afterSkip: 'fixed-header' | 'filter' = 'fixed-header'
  /** SUBSCRIBE and UNSUBSCRIBE: body bytes after the position the walker has reached or scheduled to skip to. */
  #left = 0
  #filters = 0
  #filterLengthHigh = 0

  /** @param limits copied: later changes to the object are not seen */
  constructor (limits: PacketLimits) {
    this.#limits = {
      maxPayloadBytes: limits.maxPayloadBytes,
      maxPacketBytes: limits.maxPacketBytes,
      maxConnectPacketBytes: limits.maxConnectPacketBytes,
      maxFiltersPerPacket: limits.maxFiltersPerPacket
    }
  }

  /** False once the walker stopped inspecting: after a refusal or on malformed framing. */
  get inspecting (): boolean {
    return this.#step !== 'stopped'
  }

  /**
   * The CONNECT was accepted: packets whose header is completed from now on are held to the normal
   * limits instead of `maxConnectPacketBytes`.
   */
  accept (): void {
    this.#accepted = true
  }

  /**
   * Feed the next bytes of the stream. Returns what was refused when this chunk completes the header (or,
   * for too many filters, the filter length) that decides it; the walker then stops, as the connection is
   * going away. Otherwise undefined.
   */
  push (chunk: Buffer): OversizeInfo | PacketRefusal | undefined {
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
        if (this.#afterSkip === 'filter') this.#nextFilter()
        else this.#step = 'fixed-header'
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
        case 'remaining-length': {
          const refusal = this.#lengthByte(byte)
          if (refusal !== undefined) return refusal
          break
        }
        case 'topic-high':
          this.#topicLengthHigh = byte
          this.#step = 'topic-low'
          break
        case 'topic-low': {
          const refusal = this.#topicLengthLow(byte, chunk, i)
          if (refusal !== undefined) return refusal
          break
        }
        case 'filter-high':
          this.#filterLengthHigh = byte
          this.#left--
          this.#step = 'filter-low'
          break
        case 'filter-low': {
          const refusal = this.#filterLengthLow(byte)
          if (refusal !== undefined) return refusal
          break
        }
      }
    }
    return undefined
  }

  /** One byte of the remaining length's variable-length encoding. */
  #lengthByte (byte: number): PacketRefusal | undefined {
    this.#remaining += (byte & 0x7f) * this.#multiplier
    this.#multiplier *= 128
    this.#lengthBytes++
    if ((byte & 0x80) === 0) return this.#lengthDone()
    if (this.#lengthBytes === 4) {
      // a 5th length byte is malformed [MQTT-2.2.3]: mqtt-packet's parser errors and aedes
      // closes the connection; without boundaries there is nothing more to inspect
      this.#step = 'stopped'
    }
    return undefined
  }

  /** A PUBLISH's topic length is known, so its payload's size: refuse it (with the topic when this chunk holds it) or skip the body. */
  #topicLengthLow (byte: number, chunk: Buffer, i: number): OversizeInfo | undefined {
    const topicLength = this.#topicLengthHigh * 256 + byte
    // QoS 3 is malformed too, but the boundaries hold: count a packet id so as not to depend on the parser
    const payloadBytes = this.#remaining - 2 - topicLength - (this.#qos > 0 ? 2 : 0)
    const limit = this.#limits.maxPayloadBytes
    if (payloadBytes > limit) {
      this.#step = 'stopped'
      const topicEnd = i + topicLength
      return topicEnd <= chunk.length
        ? { payloadBytes, limit, topic: chunk.toString('utf8', i, topicEnd) }
        : { payloadBytes, limit }
    }
    this.#skipThen(this.#remaining - 2, 'fixed-header')
    return undefined
  }

  /** A SUBSCRIBE or UNSUBSCRIBE filter's length is known: count it, then skip it. */
  #filterLengthLow (byte: number): PacketRefusal | undefined {
    this.#left--
    // a SUBSCRIBE filter is followed by its requested QoS byte [MQTT-3.8.3]
    const filterBytes = this.#filterLengthHigh * 256 + byte + (this.#type === SUBSCRIBE ? 1 : 0)
    if (filterBytes > this.#left) {
      // past the packet end: the parser refuses it ("Cannot parse topic"); the packet boundary holds
      this.#skipThen(this.#left, 'fixed-header')
      this.#left = 0
      return undefined
    }
    this.#filters++
    if (this.#filters > this.#limits.maxFiltersPerPacket) {
      return this.#refuse('filters_per_packet', this.#limits.maxFiltersPerPacket, this.#filters)
    }
    this.#left -= filterBytes
    this.#skipThen(filterBytes, 'filter')
    return undefined
  }

  /** The remaining length is known: refuse from it, or decide what to inspect of the body. */
  #lengthDone (): PacketRefusal | undefined {
    const remaining = this.#remaining
    const limits = this.#limits
    // until CONNACK, whoever is on the other end is unauthenticated: no packet type may make the
    // parser hold more than this per connection, the CONNECT itself included
    if (!this.#accepted && remaining > limits.maxConnectPacketBytes) return this.#refuse('connect_packet_bytes', limits.maxConnectPacketBytes)
    if (this.#type !== PUBLISH && remaining > limits.maxPacketBytes) return this.#refuse('packet_bytes', limits.maxPacketBytes)
    if (this.#type === PUBLISH && remaining >= 2) {
      this.#step = 'topic-high'
    } else if ((this.#type === SUBSCRIBE || this.#type === UNSUBSCRIBE) && remaining >= 2) {
      // MQTT 3.1.1 layout [MQTT-3.8.3, 3.10.3]: aedes 1.x accepts no MQTT 5 CONNECT, so no properties
      // come between the packet id and the filters on an accepted connection
      this.#filters = 0
      this.#left = remaining - 2
      this.#skipThen(2, 'filter') // the packet id
    } else {
      // other packets, and a PUBLISH, SUBSCRIBE or UNSUBSCRIBE with no room for its first field (the parser refuses it)
      this.#skipThen(remaining, 'fixed-header')
    }
    return undefined
  }

  /** After a filter: the next one, or the packet's end. */
  #nextFilter (): void {
    const smallest = this.#type === SUBSCRIBE ? 3 : 2
    if (this.#left >= smallest) {
      this.#step = 'filter-high'
      return
    }
    // the end of the packet, or a byte or two too few to hold a filter (malformed: left to the parser)
    this.#skipThen(this.#left, 'fixed-header')
    this.#left = 0
  }

  #skipThen (bytes: number, after: 'fixed-header' | 'filter'): void {
    this.#skip = bytes
    this.#afterSkip = after
    this.#step = 'skip'
  }

  #refuse (limit: PacketLimit, max: number, filters?: number): PacketRefusal {
    this.#step = 'stopped'
    const refusal = { limit, packet: PACKET_NAMES[this.#type] ?? 'reserved', bytes: this.#remaining, max }
    return filters === undefined ? refusal : { ...refusal, filters }
  }
}

/**
 * Watch the MQTT byte stream Aedes will read from `stream` (a net.Socket, tls.TLSSocket or the Duplex of ws' createWebSocketStream)
 * and refuse the first packet over a limit of {@link PacketWalker}: call `onOversize` (a PUBLISH payload) or `onRefused`
 * (a {@link PacketLimit}) once, destroy the stream, and never hand the offending bytes to the reader. Zero-copy and no
 * extra stream layer: it wraps the stream's own `read` method. Until the returned guard's `accepted()` is called, every
 * packet is held to `maxConnectPacketBytes`, so an unauthenticated connection can make the parser hold no more than that.
 *
 * Call it before `aedes.handle(stream)`. A refusal on size is decided as soon as the header's first 2–7 bytes
 * have been read, so over TCP and TLS a 200 MB packet costs the broker about one socket read of its body
 * (the readable highWaterMark, 16 KiB on Node 20, or one 64 KiB libuv read); a SUBSCRIBE or UNSUBSCRIBE with too
 * many filters costs at most the bytes up to the first filter too many. Over WebSocket, ws assembles
 * each WebSocket message whole before the stream sees it: there the bound is ws' `maxPayload`.
 * What the guard withholds is the chunk that completes the deciding header; up to 6 header bytes that came
 * in earlier chunks (and, for too many filters, the filters before) were already passed on and sit in mqtt-packet's
 * parser, which is dropped with the connection.
 * Other packets in the refused chunk are dropped with it: no PUBACK was sent for them, and a QoS 0 message
 * may be lost, which QoS 0 allows.
 *
 * It guards readers that pull with `read()`, as aedes does (a 'readable' listener keeps the stream paused).
 * A 'data' listener in flowing mode gets chunks before `read` returns them, or without `read` at all, so
 * the guard would still destroy the stream but not hide the chunk. Chunks that are not Buffers (a stream with
 * `setEncoding`) pass uninspected; aedes never sets one. All three transports hand out Buffers: the ws stream
 * is a byte-mode Duplex (`objectMode: false`) fed with each message as a Buffer.
 */
export function guardPacketSize (stream: Duplex, options: PacketGuardOptions): PacketGuard {
  // Why not a Transform in front of aedes: a Transform is one-way, and aedes writes CONNACK, PUBLISH
  // and the rest to the same object it reads from, so it would need a Duplex joining the Transform
  // and the socket's write side: one more stream, callback and buffer on every write to every client,
  // and close/error/destroy to forward both ways. Wrapping `read` costs one call per read, only on the
  // receiving side, and keeps the object aedes gets the socket itself (bytesRead, remoteAddress, setNoDelay).
  const walker = new PacketWalker(options)
  const { onOversize, onRefused } = options
  const original = stream.read.bind(stream)
  let refused = false
  stream.read = function guardedRead (size?: number): unknown {
    if (refused) return null
    const chunk: unknown = original(size)
    if (!Buffer.isBuffer(chunk) || !walker.inspecting) return chunk
    const refusal = walker.push(chunk)
    if (refusal === undefined) return chunk
    refused = true
    try {
      // two callbacks, not one: a PUBLISH payload refusal is an event refusal (payload_too_large, dead-letter
      // record, the publish gate's counters), the others are connection limits (ce_broker_limit_hits_total)
      if ('payloadBytes' in refusal) onOversize(refusal)
      else onRefused(refusal)
    } finally {
      // no error: nothing on the wire explains it (MQTT 3.1.1 has no reason code), and aedes would
      // report it as a client error; the callbacks are where the refusal is reported
      stream.destroy()
    }
    return null
  }
  return { accepted: function accepted () { walker.accept() } }
}
