import assert from 'node:assert/strict'
import { test } from 'node:test'
import mqttPacket, { type QoS } from 'mqtt-packet'
import { KIB, LIMIT, MIB, UNLIMITED, connectPacket, encode, filterLengthLowAt, lengthBytesAt, lengthEndAt, publish, publishHeader, remainingOf, subscribePacket, unsubscribePacket } from '../helpers/mqtt-bytes.js'
import { varint } from '../helpers/raw.js'
import { PacketWalker, type OversizeInfo, type PacketLimits, type PacketRefusal } from '../../src/core/transport/size-guard.js'

/** A walker of an accepted connection that refuses only PUBLISH payloads over `maxPayloadBytes`. */
function payloadWalker (maxPayloadBytes: number): PacketWalker {
  const walker = new PacketWalker({ ...UNLIMITED, maxPayloadBytes })
  walker.accept()
  return walker
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
