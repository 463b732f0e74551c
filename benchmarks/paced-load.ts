/**
 * The paced load (`PacedLoad`): one publisher at a fixed rate, each event stamped with
 * its send time; the subscriber takes each event's publish → arrival latency.
 */
import { performance } from 'node:perf_hooks'
import { generate } from 'mqtt-packet'
import { LatencyLog, readStamp, SEND_STAMP_ATTRIBUTE, SendStamper, STAMP_PLACEHOLDER, wallClockMs } from './latency.js'
import { bookingReservedEvent } from './payload.js'
import type { LatencySummary, LoadResult } from './protocol.js'
import type { PacedLoad } from './scenarios.js'
import { IdStamper, idTemplate, runTag } from './unique-ids.js'
import { DRAIN_TIMEOUT_MS, loadResult, measureWindow, openClient, openSubscriber, receiveBacklog, type Ports, type Run } from './load-session.js'

/** The paced publisher's timer period, in ms: each tick sends the events due by then. */
const PACE_TICK_MS = 1

/**
 * A fixed offered rate, open loop: one publisher sends `ratePerSec` events whatever
 * the broker does with them (a publisher that waited for the broker would hide the
 * very delays the percentiles are about). A 1 ms timer drives it; each tick sends the
 * events due by then (`ratePerSec` × time since the start), so usually one and two
 * when the timer fired late, never a burst that builds up. Each event gets the next
 * unique id and, just before its write, its send stamp (`sentat`, `latency.ts`); it
 * is written as a copy, so the next stamp never touches bytes still queued. The
 * subscriber records each arrival's latency; the summary covers the events sent
 * in the window, taken after the backlog has arrived so that late ones count too.
 */
export async function paced (run: Run, ports: Ports, load: PacedLoad, warmupMs: number, windowMs: number): Promise<LoadResult> {
  const template = idTemplate(runTag(), 0)
  const packet = generate({
    cmd: 'publish',
    topic: load.topic,
    payload: bookingReservedEvent(load.payloadBytes, template, { [SEND_STAMP_ATTRIBUTE]: STAMP_PLACEHOLDER }),
    qos: 0,
    dup: false,
    retain: false
  })
  const ids = new IdStamper(packet, packet, template)
  const stamps = new SendStamper(packet)

  const latencies = new LatencyLog()
  const subscriber = await openSubscriber(run, ports.subscriber, load.subscription, function onPublish (body: Buffer) {
    const arrivedAt = wallClockMs()
    const sentAt = readStamp(body)
    if (sentAt !== undefined) latencies.add(sentAt, arrivedAt - sentAt)
  })
  const publisher = await openClient(run, ports.publishers, 'bench-pub-0')

  let written = 0
  let timer: NodeJS.Timeout | undefined
  const startedAt = performance.now()
  function tick (): void {
    if (run.signal.aborted || publisher.socket.destroyed) return
    const due = Math.floor((performance.now() - startedAt) * load.ratePerSec / 1000)
    while (written < due) {
      ids.stamp()
      stamps.stamp()
      publisher.socket.write(Buffer.from(packet))
      written++
    }
    timer = setTimeout(tick, PACE_TICK_MS)
  }
  tick()

  const window = await measureWindow(run, subscriber.walker, function total () { return written }, warmupMs, windowMs)
  clearTimeout(timer)
  publisher.end()
  const backlog = await receiveBacklog(run, subscriber.walker, function total () { return written }, DRAIN_TIMEOUT_MS + warmupMs + windowMs)
  const latency: LatencySummary = latencies.summary(window.start.wallMs, window.end.wallMs)
  return { ...loadResult(window, backlog, written - subscriber.walker.publishes), latency }
}
