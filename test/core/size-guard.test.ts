import assert from 'node:assert/strict'
import { once } from 'node:events'
import { connect as netConnect, createServer, type Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { test, type TestContext } from 'node:test'
import mqttPacket, { type IPublishPacket, type Packet, type QoS } from 'mqtt-packet'
import { WebSocket, WebSocketServer, createWebSocketStream } from 'ws'
import { PacketWalker, guardPacketSize, type OversizeInfo, type PacketGuard, type PacketLimits, type PacketRefusal } from '../../src/transport/size-guard.js'

const KIB = 1024
const MIB = 1024 * KIB
const LIMIT = 256 * KIB
/** Limits that never refuse: each test lowers the one it is about. */
const UNLIMITED: PacketLimits = { maxPayloadBytes: Number.MAX_SAFE_INTEGER, maxPacketBytes: Number.MAX_SAFE_INTEGER, maxConnectPacketBytes: Number.MAX_SAFE_INTEGER, maxFiltersPerPacket: Number.MAX_SAFE_INTEGER }

/** A walker of an accepted connection that refuses only PUBLISH payloads over `maxPayloadBytes`. */
function payloadWalker (maxPayloadBytes: number): PacketWalker {
  const walker = new PacketWalker({ ...UNLIMITED, maxPayloadBytes })
  walker.accept()
  return walker
}

function publish (topic: string, payloadBytes: number, qos: QoS): IPublishPacket {
  const packet: IPublishPacket = { cmd: 'publish', topic, payload: Buffer.alloc(payloadBytes, 0x61), qos, dup: false, retain: false }
  if (qos > 0) packet.messageId = 42
  return packet
}

function encode (...packets: Packet[]): Buffer {
  return Buffer.concat(packets.map((packet) => mqttPacket.generate(packet)))
}

/** MQTT's remaining-length varint [MQTT-2.2.3]. */
function varint (value: number): Buffer {
  const bytes: number[] = []
  let rest = value
  do {
    const low = rest % 128
    rest = Math.floor(rest / 128)
    bytes.push(rest > 0 ? low | 0x80 : low)
  } while (rest > 0)
  return Buffer.from(bytes)
}

/** The header of a PUBLISH announcing `payloadBytes`, written by hand: fixed header, length, topic, packet id; no payload. */
function publishHeader (topic: string, payloadBytes: number, qos: QoS): Buffer {
  const topicBytes = Buffer.from(topic)
  const topicLength = Buffer.from([topicBytes.length >> 8, topicBytes.length & 0xff])
  const packetId = qos > 0 ? Buffer.from([0, 42]) : Buffer.alloc(0)
  const remaining = 2 + topicBytes.length + packetId.length + payloadBytes
  return Buffer.concat([Buffer.from([0x30 | (qos << 1)]), varint(remaining), topicLength, topicBytes, packetId])
}

/** Number of remaining-length bytes of the packet starting at `offset`. */
function lengthBytesAt (bytes: Buffer, offset: number): number {
  let count = 1
  while (((bytes[offset + count] ?? 0) & 0x80) !== 0) count++
  return count
}

/** A seeded PRNG (mulberry32), so a failing random split can be replayed. */
function prng (seed: number): () => number {
  let state = seed
  return () => {
    state = (state + 0x6d2b79f5) | 0
    let x = Math.imul(state ^ (state >>> 15), 1 | state)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

interface Chunking {
  readonly name: string
  readonly chunks: () => Iterable<Buffer>
}

/**
 * Ways to cut `bytes`: in two at every byte boundary (only near both ends for streams over 64 KiB),
 * one byte at a time, and 50 runs of random chunk sizes.
 */
function * chunkings (bytes: Buffer, seed: number): Generator<Chunking> {
  const every = bytes.length <= 64 * KIB
  for (let at = 0; at <= bytes.length; at++) {
    if (!every && at > 64 && at < bytes.length - 64) continue
    yield { name: `split at ${at}`, chunks: () => [bytes.subarray(0, at), bytes.subarray(at)] }
  }
  yield {
    name: 'one byte at a time',
    chunks: function * bytewise () {
      for (let at = 0; at < bytes.length; at++) yield bytes.subarray(at, at + 1)
    }
  }
  for (let run = 0; run < 50; run++) {
    yield {
      name: `random run ${run} (seed ${seed})`,
      chunks: function * randomly () {
        const random = prng(seed + run)
        const largest = 1 + Math.floor(random() * 8 * KIB)
        for (let at = 0; at < bytes.length;) {
          const size = 1 + Math.floor(random() * largest)
          yield bytes.subarray(at, at + size)
          at += size
        }
      }
    }
  }
}

interface Refusal {
  readonly info: OversizeInfo | PacketRefusal
  /** Stream offsets of the chunk that produced it. */
  readonly start: number
  readonly end: number
}

function feed (walker: PacketWalker, chunks: Iterable<Buffer>): Refusal[] {
  const refusals: Refusal[] = []
  let offset = 0
  for (const chunk of chunks) {
    const info = walker.push(chunk)
    if (info !== undefined) refusals.push({ info, start: offset, end: offset + chunk.length })
    offset += chunk.length
  }
  return refusals
}

/** The mixed stream of the walker tests; the PUBLISH on `big/topic` carries the largest payload. */
function mixedStream (bigQos: QoS, bigPayload: number): { bytes: Buffer, bigOffset: number } {
  const before = encode(
    { cmd: 'connect', clientId: 'walker', protocolVersion: 4, protocolId: 'MQTT', clean: true, keepalive: 30 },
    { cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'a/#', qos: 1 }] },
    publish('a/qos0', 10, 0),
    publish('a/qos1', 300, 1),
    { cmd: 'pingreq' },
    publish('a/qos2', 20_000, 2)
  )
  const after = encode(publish('a/after', 5, 1), { cmd: 'pingreq' }, publish('z', 0, 0))
  return { bytes: Buffer.concat([before, encode(publish('big/topic', bigPayload, bigQos)), after]), bigOffset: before.length }
}

/** After a stream, a walker still in step with packet boundaries refuses the next oversized header. */
function assertInStep (walker: PacketWalker, limit: number, name: string): void {
  assert.deepEqual(walker.push(publishHeader('next', limit + 1, 1)), { payloadBytes: limit + 1, limit, topic: 'next' }, name)
}

for (const qos of [0, 1, 2] as const) {
  test(`walker, PUBLISH QoS ${qos} among mixed packets: nothing refused at limit = its payload size, however the stream is cut`, () => {
    const bigPayload = 30_000
    const { bytes } = mixedStream(qos, bigPayload)
    for (const { name, chunks } of chunkings(bytes, 1000 + qos)) {
      const walker = payloadWalker(bigPayload)
      assert.deepEqual(feed(walker, chunks()), [], name)
      assertInStep(walker, bigPayload, name)
    }
  })

  test(`walker, PUBLISH QoS ${qos} among mixed packets: one byte over is refused from the chunk completing its topic length`, () => {
    const bigPayload = 30_000
    const { bytes, bigOffset } = mixedStream(qos, bigPayload)
    const headerEnd = bigOffset + 1 + lengthBytesAt(bytes, bigOffset) + 2
    const topicEnd = headerEnd + 'big/topic'.length
    for (const { name, chunks } of chunkings(bytes, 2000 + qos)) {
      const refusals = feed(payloadWalker(bigPayload - 1), chunks())
      assert.equal(refusals.length, 1, name)
      const refusal = refusals[0]
      assert.ok(refusal !== undefined, name)
      const { info, start, end } = refusal
      assert.ok(start < headerEnd && headerEnd <= end, `${name}: refused from chunk ${start}..${end}, header ends at ${headerEnd}`)
      const expected: OversizeInfo = end >= topicEnd
        ? { payloadBytes: bigPayload, limit: bigPayload - 1, topic: 'big/topic' }
        : { payloadBytes: bigPayload, limit: bigPayload - 1 }
      assert.deepEqual(info, expected, name)
    }

    // before any payload byte, or even the topic, arrived
    const walker = payloadWalker(bigPayload - 1)
    assert.equal(walker.push(bytes.subarray(0, headerEnd - 1)), undefined)
    assert.deepEqual(walker.push(bytes.subarray(headerEnd - 1, headerEnd)), { payloadBytes: bigPayload, limit: bigPayload - 1 })
    assert.equal(walker.inspecting, false)
  })
}

test('walker: remaining lengths of 1, 2, 3 and 4 varint bytes, at both edges of each size', () => {
  // remaining length = 2 + topic "v" (1) + packet id (2) + payload, for a QoS 1 PUBLISH
  const cases = [[5, 1], [127, 1], [128, 2], [16_383, 2], [16_384, 3], [2_097_151, 3], [2_097_152, 4], [2_100_000, 4]] as const
  for (const [remaining, lengthBytes] of cases) {
    const payloadBytes = remaining - 5
    const packet = encode(publish('v', payloadBytes, 1))
    assert.equal(packet.length, 1 + lengthBytes + remaining)
    assert.equal(lengthBytesAt(packet, 0), lengthBytes)
    // mqtt-packet writes the same header as the hand-written one the other tests use
    assert.deepEqual(packet.subarray(0, 1 + lengthBytes + 5), publishHeader('v', payloadBytes, 1))
    const bytes = Buffer.concat([encode({ cmd: 'pingreq' }), packet, encode({ cmd: 'pingreq' }, publish('w', 0, 0))])
    const headerEnd = 2 + 1 + lengthBytes + 2
    for (const { name, chunks } of chunkings(bytes, remaining)) {
      const context = `remaining length ${remaining}, ${name}`
      const exact = payloadWalker(payloadBytes)
      assert.deepEqual(feed(exact, chunks()), [], context)
      assertInStep(exact, payloadBytes, context)
      if (payloadBytes === 0) continue
      const refusals = feed(payloadWalker(payloadBytes - 1), chunks())
      assert.equal(refusals.length, 1, context)
      const refusal = refusals[0]
      assert.ok(refusal !== undefined, context)
      assert.ok('payloadBytes' in refusal.info, context)
      assert.equal(refusal.info.payloadBytes, payloadBytes, context)
      assert.ok(refusal.start < headerEnd && headerEnd <= refusal.end, context)
    }
  }
})

test('walker: a 200 MB PUBLISH is refused from its first 7 bytes (4-byte remaining length)', () => {
  const payloadBytes = 200 * MIB
  for (const qos of [0, 1, 2] as const) {
    const header = publishHeader('uploads/big', payloadBytes, qos)
    assert.equal(lengthBytesAt(header, 0), 4)
    assert.deepEqual(payloadWalker(LIMIT).push(header.subarray(0, 7)), { payloadBytes, limit: LIMIT })
    assert.deepEqual(payloadWalker(LIMIT).push(header), { payloadBytes, limit: LIMIT, topic: 'uploads/big' })

    const bytewise = payloadWalker(LIMIT)
    for (let at = 0; at < 6; at++) assert.equal(bytewise.push(header.subarray(at, at + 1)), undefined, `byte ${at}`)
    assert.deepEqual(bytewise.push(header.subarray(6, 7)), { payloadBytes, limit: LIMIT })
    assert.equal(bytewise.push(header.subarray(7)), undefined, 'a refused stream is not inspected further')
  }
})

test('walker: a fifth remaining-length byte is left to the parser, which refuses it; bytes then pass uninspected', () => {
  const malformed = Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x7f])
  const walker = payloadWalker(LIMIT)
  assert.equal(walker.push(malformed), undefined)
  assert.equal(walker.inspecting, false)
  assert.equal(walker.push(publishHeader('t', 200 * MIB, 0)), undefined)

  // what aedes relies on to close such a connection
  const parser = mqttPacket.parser({ protocolVersion: 4 })
  const errors: Error[] = []
  parser.on('error', (err: Error) => { errors.push(err) })
  parser.parse(malformed)
  assert.equal(errors.length, 1)
})

/**
 * A walker with `limits`, the others off but `maxPacketBytes` (100 MiB, so that the probe of
 * `assertStillInStep` is refused); accepted unless told otherwise.
 */
function walkerWith (limits: Partial<PacketLimits>, accepted = true): PacketWalker {
  const walker = new PacketWalker({ ...UNLIMITED, maxPacketBytes: 100 * MIB, ...limits })
  if (accepted) walker.accept()
  return walker
}

/** Stream offset of the last remaining-length byte of the packet starting at `offset`. */
function lengthEndAt (bytes: Buffer, offset: number): number {
  return offset + lengthBytesAt(bytes, offset)
}

/** Remaining length of the single packet `packet`. */
function remainingOf (packet: Buffer): number {
  return packet.length - 1 - lengthBytesAt(packet, 0)
}

/** A PINGREQ-typed header announcing 200 MB: any walker still in step with packet boundaries refuses it. */
const HUGE_PING = Buffer.concat([Buffer.from([0xc0]), varint(200 * MIB)])

function assertStillInStep (walker: PacketWalker, name: string): void {
  assert.equal(walker.inspecting, true, name)
  assert.notEqual(walker.push(HUGE_PING), undefined, `${name}: the walker lost the packet boundaries`)
}

/**
 * Feed `bytes` cut every way: at the limit nothing is refused and the walker stays in step; with `over`
 * exactly one refusal, `expected`, from the chunk holding stream offset `decisive`.
 */
function assertRefusedAt (bytes: Buffer, seed: number, at: () => PacketWalker, over: () => PacketWalker, expected: PacketRefusal, decisive: number): void {
  for (const { name, chunks } of chunkings(bytes, seed)) {
    const exact = at()
    assert.deepEqual(feed(exact, chunks()), [], name)
    assertStillInStep(exact, name)
    const refusals = feed(over(), chunks())
    assert.equal(refusals.length, 1, name)
    const refusal = refusals[0]
    assert.ok(refusal !== undefined, name)
    assert.deepEqual(refusal.info, expected, name)
    assert.ok(refusal.start <= decisive && decisive < refusal.end, `${name}: refused from chunk ${refusal.start}..${refusal.end}, decided at ${decisive}`)
  }
}

const PING = encode({ cmd: 'pingreq' })
const TRAILER = encode({ cmd: 'pingreq' }, publish('t', 3, 1))

function subscribePacket (filters: readonly string[]): Buffer {
  return encode({ cmd: 'subscribe', messageId: 7, subscriptions: filters.map((topic) => ({ topic, qos: 1 as const })) })
}

function unsubscribePacket (filters: readonly string[]): Buffer {
  return encode({ cmd: 'unsubscribe', messageId: 7, unsubscriptions: [...filters] })
}

function connectPacket (clientId: string): Buffer {
  return encode({ cmd: 'connect', clientId, protocolVersion: 4, protocolId: 'MQTT', clean: true, keepalive: 0 })
}

test('walker, limits.maxPacketBytes: SUBSCRIBE, UNSUBSCRIBE and CONNECT at the limit pass, one byte over is refused from the remaining length', () => {
  const cases = [
    ['subscribe', subscribePacket([`long/${'x'.repeat(300)}`, 'a/+'])],
    ['unsubscribe', unsubscribePacket(['a/#', `b/${'y'.repeat(200)}`])],
    ['connect', connectPacket('c'.repeat(400))]
  ] as const
  for (const [packet, bytes] of cases) {
    const remaining = remainingOf(bytes)
    const stream = Buffer.concat([PING, bytes, TRAILER])
    assertRefusedAt(stream, remaining,
      () => walkerWith({ maxPacketBytes: remaining }),
      () => walkerWith({ maxPacketBytes: remaining - 1 }),
      { limit: 'packet_bytes', packet, bytes: remaining, max: remaining - 1 },
      lengthEndAt(stream, PING.length))
  }
})

test('walker, limits.maxPacketBytes: PUBLISH is held to maxPayloadBytes only; a 200 MB SUBSCRIBE is refused from its first 5 bytes', () => {
  const big = encode(publish('p', 100 * KIB, 1))
  assert.deepEqual(feed(walkerWith({ maxPacketBytes: 1 * KIB, maxPayloadBytes: 100 * KIB }), [Buffer.concat([PING, big, TRAILER])]), [])
  assert.deepEqual(feed(walkerWith({ maxPacketBytes: 1 * KIB, maxPayloadBytes: 100 * KIB - 1 }), [big]).map((r) => r.info), [{ payloadBytes: 100 * KIB, limit: 100 * KIB - 1, topic: 'p' }])

  const header = Buffer.concat([Buffer.from([0x82]), varint(200 * MIB)])
  const bytewise = walkerWith({ maxPacketBytes: 320 * KIB })
  for (let at = 0; at < header.length - 1; at++) assert.equal(bytewise.push(header.subarray(at, at + 1)), undefined)
  assert.deepEqual(bytewise.push(header.subarray(header.length - 1)), { limit: 'packet_bytes', packet: 'subscribe', bytes: 200 * MIB, max: 320 * KIB })
})

test('walker, limits.maxConnectPacketBytes: before accept() any packet over it is refused, CONNECT and PUBLISH included', () => {
  const connect = connectPacket('d'.repeat(500))
  const connectRemaining = remainingOf(connect)
  const stream = Buffer.concat([connect, TRAILER])
  assertRefusedAt(stream, 3000,
    () => walkerWith({ maxConnectPacketBytes: connectRemaining }, false),
    () => walkerWith({ maxConnectPacketBytes: connectRemaining - 1 }, false),
    { limit: 'connect_packet_bytes', packet: 'connect', bytes: connectRemaining, max: connectRemaining - 1 },
    lengthEndAt(stream, 0))

  // a PUBLISH pipelined behind the CONNECT, within maxPayloadBytes but over the pre-CONNECT cap
  const small = connectPacket('e')
  const pub = encode(publish('q', 5000, 1))
  const pubRemaining = remainingOf(pub)
  const pipelined = Buffer.concat([small, pub, TRAILER])
  assertRefusedAt(pipelined, 4000,
    () => walkerWith({ maxConnectPacketBytes: pubRemaining, maxPayloadBytes: 5000 }, false),
    () => walkerWith({ maxConnectPacketBytes: pubRemaining - 1, maxPayloadBytes: 5000 }, false),
    { limit: 'connect_packet_bytes', packet: 'publish', bytes: pubRemaining, max: pubRemaining - 1 },
    lengthEndAt(pipelined, small.length))

  // over both the pre-CONNECT cap and another limit: the pre-CONNECT cap is the one named
  assert.deepEqual(walkerWith({ maxConnectPacketBytes: 100, maxPayloadBytes: 10 }, false).push(pub), { limit: 'connect_packet_bytes', packet: 'publish', bytes: pubRemaining, max: 100 })
  assert.deepEqual(walkerWith({ maxConnectPacketBytes: 100, maxPacketBytes: 100 }, false).push(connect), { limit: 'connect_packet_bytes', packet: 'connect', bytes: connectRemaining, max: 100 })
})

test('walker, limits.maxConnectPacketBytes: after accept() the same PUBLISH passes, however the rest of the stream is cut', () => {
  const small = connectPacket('e')
  const rest = Buffer.concat([encode(publish('q', 5000, 1), { cmd: 'subscribe', messageId: 2, subscriptions: [{ topic: 'x'.repeat(3000), qos: 0 }] }), TRAILER])
  for (const { name, chunks } of chunkings(rest, 5000)) {
    const walker = walkerWith({ maxConnectPacketBytes: 64, maxPayloadBytes: 5000, maxPacketBytes: 4000 }, false)
    assert.equal(walker.push(small), undefined, name)
    walker.accept()
    assert.deepEqual(feed(walker, chunks()), [], name)
    assertStillInStep(walker, name)
  }
})

/** Stream offset of the low byte of filter number `n` (1-based) of the SUBSCRIBE or UNSUBSCRIBE at `offset`. */
function filterLengthLowAt (bytes: Buffer, offset: number, n: number, qosByte: boolean): number {
  let at = lengthEndAt(bytes, offset) + 1 + 2 // past the fixed header and the packet id
  for (let filter = 1; filter < n; filter++) at += 2 + bytes.readUInt16BE(at) + (qosByte ? 1 : 0)
  return at + 1
}

for (const [cmd, build] of [['subscribe', subscribePacket], ['unsubscribe', unsubscribePacket]] as const) {
  const qosByte = cmd === 'subscribe'

  test(`walker, limits.maxFiltersPerPacket: ${cmd.toUpperCase()} with the limit passes, one filter more is refused at that filter's length`, () => {
    // a filter over 255 bytes, so the length's high byte counts
    const filters = ['a', `b/${'z'.repeat(300)}`, 'c/+/d', '#', 'e', 'f/g']
    const packet = build(filters)
    const stream = Buffer.concat([PING, packet, TRAILER])
    assertRefusedAt(stream, filters.length * 100,
      () => walkerWith({ maxFiltersPerPacket: filters.length }),
      () => walkerWith({ maxFiltersPerPacket: filters.length - 1 }),
      { limit: 'filters_per_packet', packet: cmd, bytes: remainingOf(packet), max: filters.length - 1, filters: filters.length },
      filterLengthLowAt(stream, PING.length, filters.length, qosByte))
  })

  test(`walker, limits.maxFiltersPerPacket: a ${cmd.toUpperCase()} of 10,000 filters is refused before the rest of it arrives`, () => {
    const packet = build(Array.from({ length: 10_000 }, (_, i) => `f/${i}`))
    const decisive = filterLengthLowAt(packet, 0, 101, qosByte)
    assert.equal(walkerWith({ maxFiltersPerPacket: 100 }).push(packet.subarray(0, decisive)), undefined)
    assert.deepEqual(walkerWith({ maxFiltersPerPacket: 100 }).push(packet.subarray(0, decisive + 1)), { limit: 'filters_per_packet', packet: cmd, bytes: remainingOf(packet), max: 100, filters: 101 })
  })
}

test('walker: a filter running past its packet, or a few bytes too few for one, is left to the parser; the walker stays in step', () => {
  const malformed = [
    Buffer.from([0x82, 6, 0, 1, 0x03, 0xe8, 0x61, 1]), // SUBSCRIBE, a 1000-byte filter in a 6-byte packet
    Buffer.from([0xa2, 6, 0, 1, 0, 1, 0x61, 0x62]), // UNSUBSCRIBE, "a" then one stray byte
    Buffer.from([0x82, 4, 0, 1, 0, 1]) // SUBSCRIBE, a 1-byte filter with neither its byte nor a QoS
  ]
  for (const bytes of malformed) {
    for (const { name, chunks } of chunkings(Buffer.concat([bytes, TRAILER]), bytes.length)) {
      const walker = walkerWith({ maxFiltersPerPacket: 1 })
      assert.deepEqual(feed(walker, chunks()), [], name)
      assertStillInStep(walker, name)
    }
    const parser = mqttPacket.parser({ protocolVersion: 4 })
    const errors: Error[] = []
    parser.on('error', (err: Error) => { errors.push(err) })
    parser.parse(bytes)
    assert.equal(errors.length, 1, `the parser refuses ${bytes.toString('hex')}`)
  }
})

/** `stream` with the guard, read the way aedes 1.2 does (lib/client.js: `conn.read(null)` in 'readable'). */
interface GuardedReader {
  /** What the reader got, in order. */
  readonly chunks: Buffer[]
  /** `typeof` of anything `read` returned that was not a Buffer. */
  readonly notBuffers: string[]
  /** What `onOversize` and `onRefused` were called with, in order. */
  readonly refusals: Array<OversizeInfo | PacketRefusal>
  /** The first of them. */
  readonly refused: Promise<OversizeInfo | PacketRefusal>
  readonly closed: Promise<void>
  readonly guard: PacketGuard
  untilBytes: (bytes: number) => Promise<void>
}

/** Payload limit `LIMIT`, the other limits off, the connection accepted: unless `limits` says otherwise. */
function guardedReader (stream: Duplex, limits: PacketLimits = { ...UNLIMITED, maxPayloadBytes: LIMIT }, accepted = true): GuardedReader {
  const chunks: Buffer[] = []
  const notBuffers: string[] = []
  const refusals: Array<OversizeInfo | PacketRefusal> = []
  let waiter: { readonly bytes: number, readonly resolve: () => void } | undefined
  let firstRefusal: (info: OversizeInfo | PacketRefusal) => void = () => {}
  const refused = new Promise<OversizeInfo | PacketRefusal>((resolve) => { firstRefusal = resolve })
  const closed = new Promise<void>((resolve) => { stream.once('close', () => { resolve() }) })
  const received = (): number => chunks.reduce((sum, chunk) => sum + chunk.length, 0)

  const record = (info: OversizeInfo | PacketRefusal): void => {
    refusals.push(info)
    firstRefusal(info)
  }
  const guard = guardPacketSize(stream, {
    ...limits,
    onOversize: function recordOversize (info) { record(info) },
    onRefused: function recordRefused (refusal) { record(refusal) }
  })
  if (accepted) guard.accepted()
  stream.on('readable', function readLikeAedes () {
    for (let chunk: unknown = stream.read(); chunk !== null; chunk = stream.read()) {
      if (Buffer.isBuffer(chunk)) chunks.push(chunk)
      else notBuffers.push(typeof chunk)
    }
    if (waiter !== undefined && received() >= waiter.bytes) waiter.resolve()
  })
  // aedes listens for errors too; a refusal destroys without one, so none is expected here
  stream.on('error', function streamError (err: Error) { notBuffers.push(`error: ${err.message}`) })

  return {
    chunks,
    notBuffers,
    refusals,
    refused,
    closed,
    guard,
    untilBytes: async (bytes) => {
      if (received() >= bytes) return
      await new Promise<void>((resolve) => { waiter = { bytes, resolve } })
    }
  }
}

async function within<T> (promise: Promise<T>, what: string, ms = 5_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => { reject(new Error(`${what}: nothing within ${ms} ms`)) }, ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

const SMALL = encode(publish('sensors/1', 64, 1))
/** A header announcing 200 MB, then a few KB of its payload. */
const HUGE_START = Buffer.concat([publishHeader('uploads/big', 200 * MIB, 1), Buffer.alloc(4 * KIB, 0x62)])

function assertRefusedHuge (peer: GuardedReader): void {
  assert.equal(peer.refusals.length, 1, 'onOversize is called once')
  const [info] = peer.refusals
  assert.ok(info !== undefined && 'payloadBytes' in info)
  assert.equal(info.payloadBytes, 200 * MIB)
  assert.equal(info.limit, LIMIT)
  // the topic is reported only when it came in the same chunk as the topic length
  assert.ok(info.topic === undefined || info.topic === 'uploads/big')
  assert.deepEqual(Buffer.concat(peer.chunks), SMALL, 'the reader got the small PUBLISH and nothing of the large one')
  assert.deepEqual(peer.notBuffers, [])
}

test('over TCP: a PUBLISH announcing 200 MB closes the connection before its bytes reach the reader', async (t) => {
  let serverSide: ((peer: GuardedReader) => void) | undefined
  const accepted = new Promise<GuardedReader>((resolve) => { serverSide = resolve })
  const sockets: Socket[] = []
  const server = createServer(function guardedConnection (socket) {
    sockets.push(socket)
    serverSide?.(guardedReader(socket))
  })
  server.listen(0, '127.0.0.1')
  await within(once(server, 'listening'), 'listen')
  const address = server.address()
  assert.ok(typeof address === 'object' && address !== null)

  const client = netConnect(address.port, '127.0.0.1')
  sockets.push(client)
  t.after(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
  })
  const clientClosed = new Promise<void>((resolve) => { client.once('close', () => { resolve() }) })
  // the rest of the large write may hit the closed socket (EPIPE, ECONNRESET): the test asserts on 'close'
  client.on('error', function clientError () {})
  await within(once(client, 'connect'), 'connect')
  const peer = await within(accepted, 'accept')

  client.write(SMALL)
  await within(peer.untilBytes(SMALL.length), 'the small PUBLISH')
  assert.deepEqual(Buffer.concat(peer.chunks), SMALL)

  client.write(HUGE_START)
  await within(peer.refused, 'onOversize')
  await within(peer.closed, 'server socket close')
  await within(clientClosed, 'client sees the close')
  assertRefusedHuge(peer)
})

test('over WebSocket (ws createWebSocketStream): read returns Buffers, and the guard closes the WebSocket', async (t) => {
  let serverSide: ((peer: GuardedReader) => void) | undefined
  const accepted = new Promise<GuardedReader>((resolve) => { serverSide = resolve })
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 })
  wss.on('connection', function guardedWebSocket (ws) {
    const stream = createWebSocketStream(ws)
    serverSide?.(guardedReader(stream))
  })
  await within(once(wss, 'listening'), 'listen')
  const address = wss.address()
  assert.ok(typeof address === 'object' && address !== null)

  const client = new WebSocket(`ws://127.0.0.1:${address.port}`)
  t.after(async () => {
    client.terminate()
    for (const ws of wss.clients) ws.terminate()
    await new Promise<void>((resolve) => { wss.close(() => { resolve() }) })
  })
  const clientClosed = new Promise<number>((resolve) => { client.once('close', (code: number) => { resolve(code) }) })
  client.on('error', function clientError () { /* a terminated connection shows up as 'close' */ })
  await within(once(client, 'open'), 'open')
  const peer = await within(accepted, 'accept')

  client.send(SMALL)
  await within(peer.untilBytes(SMALL.length), 'the small PUBLISH')
  assert.deepEqual(Buffer.concat(peer.chunks), SMALL)

  client.send(HUGE_START)
  await within(peer.refused, 'onOversize')
  await within(peer.closed, 'stream close')
  // destroying the ws stream terminates the socket: no close frame, the client sees 1006
  assert.equal(await within(clientClosed, 'client sees the close'), 1006)
  assertRefusedHuge(peer)
})

/** A TCP connection whose server side is a {@link guardedReader} with `limits`. */
async function guardedTcp (t: TestContext, limits: PacketLimits, accepted: boolean): Promise<{ client: Socket, peer: GuardedReader, clientClosed: Promise<void> }> {
  let serverSide: ((peer: GuardedReader) => void) | undefined
  const acceptedPeer = new Promise<GuardedReader>((resolve) => { serverSide = resolve })
  const sockets: Socket[] = []
  const server = createServer(function guardedConnection (socket) {
    sockets.push(socket)
    serverSide?.(guardedReader(socket, limits, accepted))
  })
  server.listen(0, '127.0.0.1')
  await within(once(server, 'listening'), 'listen')
  const address = server.address()
  assert.ok(typeof address === 'object' && address !== null)
  const client = netConnect(address.port, '127.0.0.1')
  sockets.push(client)
  t.after(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
  })
  const clientClosed = new Promise<void>((resolve) => { client.once('close', () => { resolve() }) })
  client.on('error', function clientError () { /* writes after the close: the test asserts on 'close' */ })
  await within(once(client, 'connect'), 'connect')
  return { client, peer: await within(acceptedPeer, 'accept'), clientClosed }
}

const BROKER_LIMITS: PacketLimits = { maxPayloadBytes: LIMIT, maxPacketBytes: 320 * KIB, maxConnectPacketBytes: 64 * KIB, maxFiltersPerPacket: 100 }

test('over TCP: before accepted(), a CONNECT announcing 10 MB is refused and none of it reaches the reader', async (t) => {
  const { client, peer, clientClosed } = await guardedTcp(t, BROKER_LIMITS, false)
  const header = Buffer.concat([Buffer.from([0x10]), varint(10 * MIB)])
  client.write(Buffer.concat([header, Buffer.alloc(64 * KIB, 0x63)]))
  assert.deepEqual(await within(peer.refused, 'onRefused'), { limit: 'connect_packet_bytes', packet: 'connect', bytes: 10 * MIB, max: 64 * KIB })
  await within(peer.closed, 'server socket close')
  await within(clientClosed, 'client sees the close')
  assert.equal(peer.refusals.length, 1)
  // the header may come in two reads: then its first byte was handed on, never more
  assert.ok(Buffer.concat(peer.chunks).length < header.length)
})

test('over TCP: after accepted(), a SUBSCRIBE of 10,000 filters is refused; the reader got the packets before it', async (t) => {
  const { client, peer, clientClosed } = await guardedTcp(t, BROKER_LIMITS, false)
  const connect = connectPacket('tcp')
  client.write(connect)
  await within(peer.untilBytes(connect.length), 'the CONNECT')
  peer.guard.accepted()
  // over the pre-CONNECT cap, within the others
  const first = subscribePacket([`long/${'x'.repeat(1000)}`, ...Array.from({ length: 99 }, (_, i) => `s/${i}/${'y'.repeat(1000)}`)])
  assert.ok(remainingOf(first) > 64 * KIB)
  client.write(first)
  await within(peer.untilBytes(connect.length + first.length), 'the first SUBSCRIBE')
  const big = subscribePacket(Array.from({ length: 10_000 }, (_, i) => `f/${i}`))
  client.write(big)
  assert.deepEqual(await within(peer.refused, 'onRefused'), { limit: 'filters_per_packet', packet: 'subscribe', bytes: remainingOf(big), max: 100, filters: 101 })
  await within(peer.closed, 'server socket close')
  await within(clientClosed, 'client sees the close')
  const got = Buffer.concat(peer.chunks)
  assert.deepEqual(got.subarray(0, connect.length + first.length), Buffer.concat([connect, first]))
  assert.ok(got.length - connect.length - first.length <= filterLengthLowAt(big, 0, 101, true), 'nothing past the chunk before the 101st filter')
  assert.deepEqual(peer.notBuffers, [])
})
