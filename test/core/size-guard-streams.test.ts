import assert from 'node:assert/strict'
import { once } from 'node:events'
import { connect as netConnect, createServer, type Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { test, type TestContext } from 'node:test'
import { WebSocket, WebSocketServer, createWebSocketStream } from 'ws'
import { KIB, LIMIT, MIB, UNLIMITED, connectPacket, encode, filterLengthLowAt, publish, publishHeader, remainingOf, subscribePacket } from '../helpers/mqtt-bytes.js'
import { varint } from '../helpers/raw.js'
import { guardPacketSize, type OversizeInfo, type PacketGuard, type PacketLimits, type PacketRefusal } from '../../src/core/transport/size-guard.js'

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

test('over TCP: a PUBLISH announcing 200 MB closes the connection before its bytes reach the reader', async (t) => {
  const { client, peer, clientClosed } = await guardedTcp(t, { ...UNLIMITED, maxPayloadBytes: LIMIT }, true)
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
