/**
 * What every load of the load generator (`loadgen.ts`) is built from: the run (its
 * sockets, abort signal and deadline), raw MQTT clients whose bytes go through a
 * `FrameWalker`, the measuring window and its report to `run.js`, and the wait for the
 * backlog once the publishers stop.
 */
import { connect, type Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { generate } from 'mqtt-packet'
import { wallClockMs } from './latency.js'
import { FrameWalker, PacketType, type PublishHandler } from './mqtt-frames.js'
import type { LoadgenMessage, LoadResult } from './protocol.js'

/** Longest wait for a CONNACK or SUBACK, in ms. */
const HANDSHAKE_TIMEOUT_MS = 5_000
/**
 * Longest the subscriber may take to receive the backlog once publishers stop, in ms,
 * on top of the load's own length (warm-up + window): a broker that accepts events
 * faster than it delivers them (ce-broker on Redis) builds a backlog that grows with it.
 */
export const DRAIN_TIMEOUT_MS = 10_000
/** The backlog counts as drained once nothing arrived for this long, in ms. */
const DRAIN_QUIET_MS = 300
const DRAIN_POLL_MS = 20

/** Where the load generator's clients connect: one broker, or node A (publishers) and node B (subscribers) of a cluster. */
export interface Ports {
  readonly publishers: number
  readonly subscriber: number
}

/** Send `message` to run.js; resolves once it has been handed to the IPC channel. */
export async function send (message: LoadgenMessage): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    if (process.send === undefined) throw new Error('loadgen.js is started by run.js with an IPC channel (fork)')
    process.send(message, undefined, {}, function sent (err: Error | null) { if (err === null) resolve(); else reject(err) })
  })
}

/** The sockets, the abort signal and the deadline of one run; `stop()` releases them all. */
export class Run {
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
export class RawClient {
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

export async function openClient (run: Run, port: number, clientId: string, onPublish?: PublishHandler): Promise<RawClient> {
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
export async function openSubscriber (run: Run, port: number, filter: string, onPublish?: PublishHandler, clientId = 'bench-sub'): Promise<RawClient> {
  const subscriber = await openClient(run, port, clientId, onPublish)
  const suback = await subscriber.request(
    generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: filter, qos: 0 }] }),
    PacketType.SUBACK)
  // SUBACK body: message id (2 bytes), then one return code per filter; 0x80 = refused [MQTT-3.9.3]
  if (suback[2] !== 0) throw new Error(`${clientId}: SUBACK return code ${String(suback[2])} for ${filter}`)
  return subscriber
}

/** Poll `done()` every DRAIN_POLL_MS until it holds; fails with `describe()` after `timeoutMs`. */
export async function waitFor (run: Run, done: () => boolean, timeoutMs: number, describe: () => string): Promise<void> {
  const from = performance.now()
  while (!done()) {
    if (performance.now() - from > timeoutMs) throw new Error(describe())
    await sleep(DRAIN_POLL_MS, undefined, { signal: run.signal })
  }
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
export interface Window {
  readonly start: Snapshot
  readonly end: Snapshot
  readonly seconds: number
}

/** Called as the window opens (after its start snapshot) and as it closes (before its end snapshot). */
export interface WindowHooks {
  readonly opened: () => void
  readonly closed: () => void
}

/**
 * Let the load run for the warm-up, then measure over the window: snapshot both ends
 * and tell run.js (which samples the server, and the receiver, at the same moments).
 */
export async function measureWindow (run: Run, walker: FrameWalker, written: () => number, warmupMs: number, windowMs: number, hooks?: WindowHooks): Promise<Window> {
  await sleep(warmupMs, undefined, { signal: run.signal })
  const start: Snapshot = { received: walker.publishes, bytes: walker.bytes, written: written(), at: performance.now(), wallMs: wallClockMs(), cpu: process.cpuUsage(), elu: performance.eventLoopUtilization() }
  hooks?.opened()
  await send({ type: 'window', phase: 'start', atMs: start.wallMs })
  try {
    await sleep(windowMs, undefined, { signal: run.signal })
  } finally {
    hooks?.closed()
  }
  const end: Snapshot = { received: walker.publishes, bytes: walker.bytes, written: written(), at: performance.now(), wallMs: wallClockMs(), cpu: process.cpuUsage(start.cpu), elu: performance.eventLoopUtilization(start.elu) }
  await send({ type: 'window', phase: 'end', atMs: end.wallMs })
  return { start, end, seconds: (end.at - start.at) / 1000 }
}

export function loadResult (window: Window, backlog: { readonly messages: number, readonly ms: number }, undelivered: number): LoadResult {
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
export async function receiveBacklog (run: Run, walker: FrameWalker, total: () => number, timeoutMs: number): Promise<{ messages: number, ms: number }> {
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
