/**
 * Load generator child of `run.js`: `node loadgen.js <scenario> <port> <warmupMs> <windowMs>`.
 *
 * Runs in its own process (its own core on a 2-core machine) and does as little
 * per message as it can, so the broker is what saturates: packets are encoded
 * once, publishers write one Buffer of many concatenated PUBLISH packets per
 * `write()` (with unique ids, only the id's counter digits are rewritten in it
 * between writes), and the subscriber counts PUBLISH packets by their fixed headers.
 * The paced load instead sends one stamped event at a time at a fixed rate, and its
 * subscriber reads each event's send stamp to take its latency.
 * Everything is bounded by time; the process exits by itself when done.
 */
import { connect, type Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { generate } from 'mqtt-packet'
import { LatencyLog, readStamp, SEND_STAMP_ATTRIBUTE, SendStamper, STAMP_PLACEHOLDER, wallClockMs } from './latency.js'
import { FrameWalker, PacketType, type PublishHandler } from './mqtt-frames.js'
import { bookingReservedEvent } from './payload.js'
import type { LatencySummary, LoadgenMessage, LoadResult } from './protocol.js'
import { findScenario, type FaninLoad, type LoadSpec, type PacedLoad } from './scenarios.js'
import { IdStamper, idTemplate, runTag } from './unique-ids.js'

/** Longest wait for a CONNACK or SUBACK, in ms. */
const HANDSHAKE_TIMEOUT_MS = 5_000
/** Slack over twice warm-up + window (the load, then at most as long again draining) before the whole run is abandoned, in ms. */
const OVERRUN_SLACK_MS = 15_000
/** Writes in a row before the pump yields to the event loop (setImmediate). */
const WRITES_PER_TURN = 16
/**
 * Longest the subscriber may take to receive the backlog once publishers stop, in ms,
 * on top of the load's own length (warm-up + window): a broker that accepts events
 * faster than it delivers them (ce-broker on Redis) builds a backlog that grows with it.
 */
const DRAIN_TIMEOUT_MS = 10_000
/** The backlog counts as drained once nothing arrived for this long, in ms. */
const DRAIN_QUIET_MS = 300
const DRAIN_POLL_MS = 20
/** The paced publisher's timer period, in ms: each tick sends the events due by then. */
const PACE_TICK_MS = 1

/** Send `message` to run.js; resolves once it has been handed to the IPC channel. */
async function send (message: LoadgenMessage): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    if (process.send === undefined) throw new Error('loadgen.js is started by run.js with an IPC channel (fork)')
    process.send(message, undefined, {}, function sent (err: Error | null) { if (err === null) resolve(); else reject(err) })
  })
}

/** The sockets, the abort signal and the deadline of one run; `stop()` releases them all. */
class Run {
  readonly #controller = new AbortController()
  readonly #sockets = new Set<Socket>()
  readonly #deadline: NodeJS.Timeout
  #error: Error | undefined

  constructor (budgetMs: number) {
    const run = this
    this.#deadline = setTimeout(function overran () { run.fail(new Error(`run did not finish within ${budgetMs} ms`)) }, budgetMs)
  }

  /** Aborted on `fail()` and on `stop()`: sleeps reject and pumps stop. */
  get signal (): AbortSignal {
    return this.#controller.signal
  }

  /** The first failure, if any: it, rather than the abort it caused, is what the run reports. */
  get error (): Error | undefined {
    return this.#error
  }

  track (socket: Socket): void {
    this.#sockets.add(socket)
  }

  fail (err: Error): void {
    if (this.signal.aborted) return
    this.#error = err
    this.stop()
  }

  stop (): void {
    clearTimeout(this.#deadline)
    this.#controller.abort()
    for (const socket of this.#sockets) socket.destroy()
    this.#sockets.clear()
  }
}

/** A raw MQTT connection whose incoming bytes go through a `FrameWalker`. */
class RawClient {
  readonly socket: Socket
  readonly walker: FrameWalker
  readonly #name: string
  /** Set by `end()`: the close that follows is ours, not the broker's. */
  #ending = false
  #waiter: { readonly type: number, readonly resolve: (body: Buffer) => void, readonly reject: (err: Error) => void } | undefined

  /** @param onPublish sees each PUBLISH body; without it PUBLISH packets are only counted */
  constructor (run: Run, port: number, name: string, onPublish?: PublishHandler) {
    this.#name = name
    const client = this
    const walker = new FrameWalker(function onControl (type: number, body: Buffer) { client.#control(type, body) }, onPublish)
    const socket = connect({ host: '127.0.0.1', port, noDelay: true })
    this.walker = walker
    this.socket = socket
    run.track(socket)
    socket.on('data', function onData (chunk: Buffer) {
      try {
        walker.push(chunk)
      } catch (err: unknown) {
        socket.destroy(err instanceof Error ? err : new Error(String(err)))
      }
    })
    socket.on('error', function onError (err: Error) { client.#reject(new Error(`${name}: ${err.message}`, { cause: err })) })
    socket.on('close', function onClose () {
      const err = new Error(`${name}: connection closed`)
      client.#reject(err)
      // during the run a close we did not ask for invalidates the figures
      if (!client.#ending && !run.signal.aborted) run.fail(err)
    })
  }

  /** Send `packet` and wait for the next control packet of `type`; resolves with its body. */
  async request (packet: Buffer, type: number): Promise<Buffer> {
    const client = this
    const reply = new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(function handshakeTimeout () {
        client.#reject(new Error(`${client.#name}: no reply of type ${type} within ${HANDSHAKE_TIMEOUT_MS} ms`))
      }, HANDSHAKE_TIMEOUT_MS)
      this.#waiter = {
        type,
        resolve: (body) => { clearTimeout(timer); resolve(body) },
        reject: (err) => { clearTimeout(timer); reject(err) }
      }
    })
    this.socket.write(packet)
    return await reply
  }

  /** Half-close after whatever is still queued for writing; the broker closes its side when done. */
  end (): void {
    this.#ending = true
    this.socket.end()
  }

  #control (type: number, body: Buffer): void {
    const waiter = this.#waiter
    if (waiter?.type !== type) return
    this.#waiter = undefined
    waiter.resolve(body)
  }

  #reject (err: Error): void {
    const waiter = this.#waiter
    this.#waiter = undefined
    waiter?.reject(err)
  }
}

async function openClient (run: Run, port: number, clientId: string, onPublish?: PublishHandler): Promise<RawClient> {
  const client = new RawClient(run, port, clientId, onPublish)
  const connack = await client.request(
    generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId, keepalive: 0 }),
    PacketType.CONNACK)
  // CONNACK body: acknowledge flags, return code [MQTT-3.2.2]
  const code = connack[1]
  if (code !== 0) throw new Error(`${clientId}: CONNACK return code ${String(code)}`)
  return client
}

/** Connect a subscriber (`bench-sub` unless named) and subscribe it to `filter` at QoS 0. */
async function openSubscriber (run: Run, port: number, filter: string, onPublish?: PublishHandler, clientId = 'bench-sub'): Promise<RawClient> {
  const subscriber = await openClient(run, port, clientId, onPublish)
  const suback = await subscriber.request(
    generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: filter, qos: 0 }] }),
    PacketType.SUBACK)
  // SUBACK body: message id (2 bytes), then one return code per filter; 0x80 = refused [MQTT-3.9.3]
  if (suback[2] !== 0) throw new Error(`${clientId}: SUBACK return code ${String(suback[2])} for ${filter}`)
  return subscriber
}

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
interface Burst {
  /** `packetsPerWrite` PUBLISH packets, concatenated. */
  readonly buffer: Buffer
  /** With unique ids: gives the packets their next ids, in place. */
  readonly refill: (() => void) | undefined
}

/** The PUBLISH packet of the fan-in load, its event carrying `id`, and `packetsPerWrite` copies of it. */
function encodeBurst (load: FaninLoad, id?: string): { readonly packet: Buffer, readonly buffer: Buffer } {
  const packet = generate({
    cmd: 'publish',
    topic: load.topic,
    payload: bookingReservedEvent(load.payloadBytes, id),
    qos: 0,
    dup: false,
    retain: false
  })
  return { packet, buffer: Buffer.concat(Array.from({ length: load.packetsPerWrite }, () => packet)) }
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

async function faninQos0 (run: Run, port: number, load: FaninLoad, warmupMs: number, windowMs: number): Promise<LoadResult> {
  const bursts = publisherBursts(load)

  const subscriber = await openSubscriber(run, port, load.subscription)
  const watchers = await Promise.all((load.watchers ?? []).map(async (filter, i) => await openSubscriber(run, port, filter, undefined, `bench-watch-${i}`)))
  const publishers = await Promise.all(Array.from({ length: load.publishers }, async (_, i) => await openClient(run, port, `bench-pub-${i}`)))

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
async function paced (run: Run, port: number, load: PacedLoad, warmupMs: number, windowMs: number): Promise<LoadResult> {
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
  const subscriber = await openSubscriber(run, port, load.subscription, function onPublish (body: Buffer) {
    const arrivedAt = wallClockMs()
    const sentAt = readStamp(body)
    if (sentAt !== undefined) latencies.add(sentAt, arrivedAt - sentAt)
  })
  const publisher = await openClient(run, port, 'bench-pub-0')

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

/** The counters at one end of the window. */
interface Snapshot {
  readonly received: number
  readonly bytes: number
  readonly written: number
  /** `performance.now()`, for rates. */
  readonly at: number
  /** Wall clock (`latency.ts`), for picking the events sent in the window by their send stamp. */
  readonly wallMs: number
  readonly cpu: NodeJS.CpuUsage
  readonly elu: ReturnType<typeof performance.eventLoopUtilization>
}

/** Both ends of the window; `end.cpu` and `end.elu` are already differences from `start`. */
interface Window {
  readonly start: Snapshot
  readonly end: Snapshot
  readonly seconds: number
}

/**
 * Let the load run for the warm-up, then measure over the window: snapshot both ends
 * and tell run.js (which samples the server, and the receiver, at the same moments).
 */
async function measureWindow (run: Run, walker: FrameWalker, written: () => number, warmupMs: number, windowMs: number): Promise<Window> {
  await sleep(warmupMs, undefined, { signal: run.signal })
  const start: Snapshot = { received: walker.publishes, bytes: walker.bytes, written: written(), at: performance.now(), wallMs: wallClockMs(), cpu: process.cpuUsage(), elu: performance.eventLoopUtilization() }
  await send({ type: 'window', phase: 'start', atMs: start.wallMs })
  await sleep(windowMs, undefined, { signal: run.signal })
  const end: Snapshot = { received: walker.publishes, bytes: walker.bytes, written: written(), at: performance.now(), wallMs: wallClockMs(), cpu: process.cpuUsage(start.cpu), elu: performance.eventLoopUtilization(start.elu) }
  await send({ type: 'window', phase: 'end', atMs: end.wallMs })
  return { start, end, seconds: (end.at - start.at) / 1000 }
}

function loadResult (window: Window, backlog: { readonly messages: number, readonly ms: number }, undelivered: number): LoadResult {
  const { start, end, seconds } = window
  return {
    backlogMessages: backlog.messages,
    drainMs: backlog.ms,
    undelivered,
    msgsPerSec: (end.received - start.received) / seconds,
    offeredPerSec: (end.written - start.written) / seconds,
    bytesPerSec: (end.bytes - start.bytes) / seconds,
    windowMs: seconds * 1000,
    cpuShare: (end.cpu.user + end.cpu.system) / 1e6 / seconds,
    eventLoopUtilization: end.elu.utilization
  }
}

/**
 * Wait until `walker` has seen `total()` PUBLISH packets or nothing arrived for
 * DRAIN_QUIET_MS; fails after `timeoutMs`. Returns what arrived meanwhile.
 */
async function receiveBacklog (run: Run, walker: FrameWalker, total: () => number, timeoutMs: number): Promise<{ messages: number, ms: number }> {
  const from = performance.now()
  const before = walker.publishes
  let seen = before
  let quietSince = from
  while (walker.publishes < total()) {
    await sleep(DRAIN_POLL_MS, undefined, { signal: run.signal })
    const now = performance.now()
    if (walker.publishes !== seen) {
      seen = walker.publishes
      quietSince = now
    } else if (now - quietSince >= DRAIN_QUIET_MS) {
      break
    }
    if (now - from > timeoutMs) {
      throw new Error(`subscriber still receiving the backlog ${timeoutMs} ms after publishers stopped (${total() - walker.publishes} to go)`)
    }
  }
  return { messages: walker.publishes - before, ms: performance.now() - from }
}

async function runLoad (run: Run, port: number, load: LoadSpec, warmupMs: number, windowMs: number): Promise<LoadResult> {
  switch (load.mode) {
    case 'fanin-qos0': return await faninQos0(run, port, load, warmupMs, windowMs)
    case 'paced': return await paced(run, port, load, warmupMs, windowMs)
  }
}

function integerArg (name: string, value: string | undefined, min: number): number {
  const n = Number(value)
  if (value === undefined || !Number.isInteger(n) || n < min) throw new Error(`loadgen.js: ${name} must be an integer >= ${min}, got ${JSON.stringify(value)}`)
  return n
}

async function main (): Promise<void> {
  const [scenarioName, portArg, warmupArg, windowArg] = process.argv.slice(2)
  const scenario = findScenario(scenarioName)
  const port = integerArg('port', portArg, 1)
  const warmupMs = integerArg('warmupMs', warmupArg, 0)
  const windowMs = integerArg('windowMs', windowArg, 1)

  const run = new Run(2 * (warmupMs + windowMs) + OVERRUN_SLACK_MS)
  try {
    const result = await runLoad(run, port, scenario.load, warmupMs, windowMs)
    run.stop()
    await send({ type: 'result', result })
  } catch (err: unknown) {
    throw run.error ?? err
  } finally {
    run.stop()
  }
}

main().then(
  function done () {
    if (process.connected) process.disconnect()
  },
  function failed (err: unknown) {
    process.stderr.write(`loadgen.js: ${err instanceof Error ? err.message : String(err)}\n`)
    process.exitCode = 1
    if (process.connected) process.disconnect()
  })
