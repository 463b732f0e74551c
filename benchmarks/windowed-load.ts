/**
 * The windowed load (`WindowedLoad`): QoS 1 publishers, each with a window of PUBLISH
 * packets awaiting their PUBACK, all of them under a bound on packets written and not yet
 * received by the subscriber. See the README's Cluster section for why.
 */
import { performance } from 'node:perf_hooks'
import type { LoadResult, WindowedFigures } from './protocol.js'
import type { WindowedLoad } from './scenarios.js'
import { idTemplate, IdStamper, runTag } from './unique-ids.js'
import { encodeBurst, MAX_PACKET_ID, numberPackets } from './fanin-load.js'
import { DRAIN_TIMEOUT_MS, loadResult, measureWindow, openClient, openSubscriber, receiveBacklog, waitFor, type Ports, type RawClient, type Run } from './load-session.js'

/** The windowed load samples how full its bounds are this often during the window, in ms. */
const WINDOWED_SAMPLE_MS = 10

/** One publisher's ring of QoS 1 PUBLISH packets, and what renews a stretch of it before it is written. */
interface Ring {
  readonly buffer: Buffer
  /** Bytes of one packet: packet `i` is `buffer[i * packetBytes, (i + 1) * packetBytes)`. */
  readonly packetBytes: number
  /** With unique ids: gives packets `first` to `first + count - 1` their next ids, in place. */
  readonly refill: ((first: number, count: number) => void) | undefined
}

/**
 * The rings of the windowed load: `window` QoS 1 packets each, with packet identifiers
 * 1 to `window`. With identical ids all publishers share one ring; with unique ids each
 * has its own, numbered by an `IdStamper` as the fan-in load's bursts are.
 */
function windowedRings (load: WindowedLoad): Ring[] {
  if (!Number.isInteger(load.window) || load.window < 1 || load.window > MAX_PACKET_ID) {
    throw new RangeError(`windowed load: window must be an integer in [1, ${MAX_PACKET_ID}], got ${load.window}`)
  }
  if (!Number.isInteger(load.maxUnreceived) || load.maxUnreceived < 1) throw new RangeError(`windowed load: maxUnreceived must be a positive integer, got ${load.maxUnreceived}`)
  const shape = { ...load, packetsPerWrite: load.window }
  const ring = (template: string | undefined): Ring => {
    const { packet, buffer } = encodeBurst(shape, template, 1)
    // the stamper checks the buffer holds copies of the packet: number the packets after it has
    const stamper = template === undefined ? undefined : new IdStamper(buffer, packet, template)
    numberPackets(buffer, packet, 1)
    return {
      buffer,
      packetBytes: packet.length,
      refill: stamper === undefined ? undefined : function stampIds (first: number, count: number) { stamper.stampRange(first, count) }
    }
  }
  if (!load.uniqueIds) {
    const shared = ring(undefined)
    return Array.from({ length: load.publishers }, () => shared)
  }
  const tag = runTag()
  return Array.from({ length: load.publishers }, (_, i) => ring(idTemplate(tag, i)))
}

/**
 * A QoS 1 publisher of the windowed load. Whenever its window or the end-to-end bound
 * leaves room, it writes the next packets of its ring, as many as both allow: at once,
 * and however few. Waiting for a larger batch would stall on the broker's Nagle's
 * algorithm (ce-broker's and raw Aedes' sockets keep it on): after one small PUBACK
 * segment the broker holds the next PUBACKs until its previous segment is ACKed, and a
 * publisher that sends nothing back leaves that ACK to its kernel's delayed-ACK timer
 * (up to 40 ms); a write carries the ACK at once. PUBACKs come back in order (a broker
 * handles one client's packets in order and acks each once routed), so a ring slot
 * comes round again only after its last copy was acked: its packet identifier is free
 * and the socket no longer holds its bytes, which `refill` may then rewrite.
 */
class WindowedPublisher {
  readonly client: RawClient
  readonly #ring: Ring
  readonly #window: number
  #sent = 0

  constructor (client: RawClient, ring: Ring, window: number) {
    this.client = client
    this.#ring = ring
    this.#window = window
  }

  /** Packets written and not acked yet. */
  get unacked (): number {
    return this.#sent - this.client.walker.pubacks
  }

  /**
   * Write as many packets as the window has room for and `room()` (the end-to-end bound)
   * allows; `wrote` counts them. Returns true when `room()` held some back: only the
   * subscriber's progress frees it then.
   */
  fill (room: () => number, wrote: (packets: number) => void): boolean {
    const free = this.#window - this.unacked
    if (free <= 0 || this.client.socket.destroyed) return false
    const count = Math.min(free, room())
    if (count > 0) {
      const first = this.#sent % this.#window
      const head = Math.min(count, this.#window - first)
      this.#write(first, head)
      if (count > head) this.#write(0, count - head)
      this.#sent += count
      wrote(count)
    }
    return count < free
  }

  #write (first: number, count: number): void {
    const { buffer, packetBytes, refill } = this.#ring
    refill?.(first, count)
    this.client.socket.write(buffer.subarray(first * packetBytes, (first + count) * packetBytes))
  }
}

/**
 * Fan-in at QoS 1 with both loops closed (see `WindowedLoad`): publishers on
 * `ports.publishers`, the subscriber on `ports.subscriber`. A publisher tops up its
 * window when its PUBACKs arrive (its socket's data); one held by the end-to-end bound
 * is topped up when the subscriber's data arrives. Writes are not chained to their
 * callbacks: the window bounds what a socket can hold. After the window, publishers
 * stop, wait for their last PUBACKs, and half-close; then the subscriber receives what
 * is still on its way.
 */
export async function faninQos1Windowed (run: Run, ports: Ports, load: WindowedLoad, warmupMs: number, windowMs: number): Promise<LoadResult> {
  const rings = windowedRings(load)
  const subscriber = await openSubscriber(run, ports.subscriber, load.subscription)
  const clients = await Promise.all(Array.from({ length: load.publishers }, async (_, i) => await openClient(run, ports.publishers, `bench-pub-${i}`)))
  const publishers = clients.map((client, i) => {
    const ring = rings[i]
    if (ring === undefined) throw new Error(`no ring for publisher ${i}`)
    return new WindowedPublisher(client, ring, load.window)
  })

  let written = 0
  let publishing = true
  const walker = subscriber.walker
  /** Publishers the end-to-end bound held back, waiting for the subscriber to receive. */
  const held = new Set<WindowedPublisher>()
  function room (): number { return publishing && !run.signal.aborted ? load.maxUnreceived - (written - walker.publishes) : 0 }
  function wrote (packets: number): void { written += packets }
  function topUp (publisher: WindowedPublisher): void {
    if (publisher.fill(room, wrote)) held.add(publisher)
    else held.delete(publisher)
  }
  // registered after the RawClient's own 'data' listener, so the walkers have counted the chunk
  subscriber.socket.on('data', function subscriberRead () {
    for (const publisher of held) topUp(publisher)
  })
  for (const publisher of publishers) {
    publisher.client.socket.on('data', function pubacksRead () { topUp(publisher) })
    topUp(publisher)
  }

  // how full the two bounds are, sampled over the window only
  let samples = 0
  let unackedSum = 0
  let unreceivedSum = 0
  let sampler: NodeJS.Timeout | undefined
  /** The subscriber's count at the first sample past the window's middle: a steady rate is the same in both halves. */
  let middle: { readonly at: number, readonly received: number } | undefined
  const unreceived = (): number => written - walker.publishes
  const window = await measureWindow(run, walker, function total () { return written }, warmupMs, windowMs, {
    opened: function startSampling () {
      const openedAt = performance.now()
      sampler = setInterval(function sampleBounds () {
        samples++
        for (const publisher of publishers) unackedSum += publisher.unacked
        unreceivedSum += unreceived()
        const now = performance.now()
        if (middle === undefined && now - openedAt >= windowMs / 2) middle = { at: now, received: walker.publishes }
      }, WINDOWED_SAMPLE_MS).unref()
    },
    closed: function stopSampling () { clearInterval(sampler) }
  })
  const { start, end } = window
  const half = middle ?? end
  const rate = (from: { readonly at: number, readonly received: number }, to: { readonly at: number, readonly received: number }): number =>
    to.at > from.at ? (to.received - from.received) * 1000 / (to.at - from.at) : 0
  const windowed: WindowedFigures = {
    firstHalfPerSec: rate(start, half),
    secondHalfPerSec: rate(half, end),
    meanUnacked: samples === 0 ? 0 : unackedSum / samples,
    meanUnreceived: samples === 0 ? 0 : unreceivedSum / samples,
    unreceivedAtStart: start.written - start.received,
    unreceivedAtEnd: end.written - end.received
  }

  publishing = false
  held.clear()
  const budgetMs = DRAIN_TIMEOUT_MS + warmupMs + windowMs
  await waitFor(run, function allAcked () { return publishers.every((p) => p.unacked === 0) }, budgetMs,
    () => `publishers still waiting for ${publishers.reduce((sum, p) => sum + p.unacked, 0)} PUBACKs ${budgetMs} ms after they stopped`)
  for (const publisher of publishers) publisher.client.end()
  const backlog = await receiveBacklog(run, walker, function total () { return written }, budgetMs)
  return { ...loadResult(window, backlog, written - walker.publishes), windowed }
}
