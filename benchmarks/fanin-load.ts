/**
 * The fan-in load (`FaninLoad`): publishers stream QoS 0 PUBLISH packets, a write of
 * `packetsPerWrite` concatenated packets at a time, throttled by TCP backpressure only;
 * one subscriber counts what arrives. Also the packet encoding the windowed load shares.
 */
import type { Socket } from 'node:net'
import { generate } from 'mqtt-packet'
import { bookingReservedEvent } from './payload.js'
import type { LoadResult } from './protocol.js'
import type { FaninLoad } from './scenarios.js'
import { IdStamper, idTemplate, runTag } from './unique-ids.js'
import { DRAIN_TIMEOUT_MS, loadResult, measureWindow, openClient, openSubscriber, receiveBacklog, type Ports, type Run } from './load-session.js'

/** Writes in a row before the pump yields to the event loop (setImmediate). */
const WRITES_PER_TURN = 16
/** Highest MQTT packet identifier [MQTT-2.3.1]: a publisher's window cannot hold more distinct ones. */
export const MAX_PACKET_ID = 0xffff

/**
 * Write `buffer` to `socket` until `stopped()`, one write at a time: the next write
 * starts from the previous one's callback, once libuv has handed all of it to the
 * kernel. A 64-packet buffer is over the socket's highWaterMark, so that is also when
 * 'drain' would come; waiting for the callback instead holds for any size, and means
 * nothing references `buffer` when `refill` (unique ids) rewrites it before a write.
 * Throttled by TCP backpressure only: a write completes once the kernel's send
 * buffer takes it. `onWrite` counts each write.
 */
function pump (socket: Socket, buffer: Buffer, refill: (() => void) | undefined, stopped: () => boolean, onWrite: () => void): void {
  let inTurn = 0
  function writeNext (): void {
    if (stopped() || socket.destroyed) return
    refill?.()
    socket.write(buffer, written)
    onWrite()
  }
  function written (err?: Error | null): void {
    // a failed write also fails the socket, whose 'error' and 'close' handlers report it
    if (err !== undefined && err !== null) return
    // a write the kernel takes at once calls back on the next tick, before timers:
    // yield now and then so that they (the window's end) still run
    if (++inTurn < WRITES_PER_TURN) {
      writeNext()
    } else {
      inTurn = 0
      setImmediate(writeNext)
    }
  }
  writeNext()
}

/** What one publisher writes over and over, and what renews it before each write. */
export interface Burst {
  /** `packetsPerWrite` PUBLISH packets, concatenated. */
  readonly buffer: Buffer
  /** With unique ids: gives the packets their next ids, in place. */
  readonly refill: (() => void) | undefined
}

/** What a burst of fan-in PUBLISH packets is made of. */
type BurstShape = Pick<FaninLoad, 'topic' | 'payloadBytes' | 'packetsPerWrite'>

/**
 * The PUBLISH packet of a fan-in load, its event carrying `id`, and `packetsPerWrite`
 * copies of it. At QoS 1 every copy has packet identifier 1; `numberPackets` gives them theirs.
 */
export function encodeBurst (load: BurstShape, id?: string, qos: 0 | 1 = 0): { readonly packet: Buffer, readonly buffer: Buffer } {
  const packet = generate({
    cmd: 'publish',
    topic: load.topic,
    payload: bookingReservedEvent(load.payloadBytes, id),
    qos,
    ...(qos === 0 ? {} : { messageId: 1 }),
    dup: false,
    retain: false
  })
  return { packet, buffer: Buffer.concat(Array.from({ length: load.packetsPerWrite }, () => packet)) }
}

/**
 * Give the QoS 1 PUBLISH packets of `buffer` (copies of `packet`, encoded with packet
 * identifier 1) the identifiers `firstId`, `firstId + 1`, ...: two bytes each, right
 * after the topic [MQTT-3.3.2.2]. Done once; the id stamper's digits are elsewhere.
 */
export function numberPackets (buffer: Buffer, packet: Buffer, firstId: number): void {
  // fixed header: type byte, then the remaining length, 1-4 bytes with a continuation bit [MQTT-2.2.3]
  let at = 1
  while (((packet[at] ?? 0) & 0x80) !== 0) at++
  at++
  const idAt = at + 2 + packet.readUInt16BE(at)
  if (packet.readUInt16BE(idAt) !== 1) throw new Error('QoS 1 PUBLISH: packet identifier not where expected')
  const packets = buffer.length / packet.length
  if (firstId + packets - 1 > MAX_PACKET_ID) throw new RangeError(`packet identifiers ${firstId}..${firstId + packets - 1} exceed ${MAX_PACKET_ID}`)
  for (let i = 0; i < packets; i++) buffer.writeUInt16BE(firstId + i, i * packet.length + idAt)
}

/**
 * One burst per publisher. Identical ids: all publishers share one buffer. Unique
 * ids: each publisher has its own, numbered by an `IdStamper` (see `unique-ids.ts`).
 */
function publisherBursts (load: FaninLoad): Burst[] {
  if (!load.uniqueIds) {
    const { buffer } = encodeBurst(load)
    return Array.from({ length: load.publishers }, () => ({ buffer, refill: undefined }))
  }
  const tag = runTag()
  return Array.from({ length: load.publishers }, (_, i) => {
    const template = idTemplate(tag, i)
    const { packet, buffer } = encodeBurst(load, template)
    const stamper = new IdStamper(buffer, packet, template)
    return { buffer, refill: function stampIds () { stamper.stamp() } }
  })
}

export async function faninQos0 (run: Run, ports: Ports, load: FaninLoad, warmupMs: number, windowMs: number): Promise<LoadResult> {
  const bursts = publisherBursts(load)

  const subscriber = await openSubscriber(run, ports.subscriber, load.subscription)
  const watchers = await Promise.all((load.watchers ?? []).map(async (filter, i) => await openSubscriber(run, ports.subscriber, filter, undefined, `bench-watch-${i}`)))
  const publishers = await Promise.all(Array.from({ length: load.publishers }, async (_, i) => await openClient(run, ports.publishers, `bench-pub-${i}`)))

  let written = 0
  let publishing = true
  function stopped (): boolean { return !publishing || run.signal.aborted }
  function counted (): void { written += load.packetsPerWrite }
  publishers.forEach(function startPump (publisher, i) {
    const burst = bursts[i]
    if (burst === undefined) throw new Error(`no burst for publisher ${i}`)
    pump(publisher.socket, burst.buffer, burst.refill, stopped, counted)
  })

  const window = await measureWindow(run, subscriber.walker, function total () { return written }, warmupMs, windowMs)

  // Stop publishing and let the subscriber take the backlog still in socket buffers
  // before anything disconnects: aedes 1.2 overflows its stack if the subscriber
  // leaves while its mqemitter queue is long (see README, "aedes under this load").
  publishing = false
  for (const publisher of publishers) publisher.end()
  const backlog = await receiveBacklog(run, subscriber.walker, function total () { return written }, DRAIN_TIMEOUT_MS + warmupMs + windowMs)
  for (const watcher of watchers) watcher.end()
  return loadResult(window, backlog, written - subscriber.walker.publishes)
}
