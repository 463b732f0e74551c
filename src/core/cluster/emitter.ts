import type { Redis } from 'ioredis'
import type { MQEmitter } from 'mqemitter'
import { pack, unpack } from 'msgpackr'
import { LogSampler } from '../log-sampler.js'
import type { Logger } from '../logger.js'
import { parseRouteChange, RouteTable } from './route-table.js'
import { clusterCommands, inboxKey, ROUTE_CHANNEL, type ClusterCommands } from './scripts.js'

type Message = Parameters<MQEmitter['emit']>[0]
type Listener = Parameters<MQEmitter['on']>[1]

/** Entries one read of the inbox takes; they are delivered before the next read. */
const READ_COUNT = 500
/** How long one blocking read of the inbox waits for entries, in ms. */
const READ_BLOCK_MS = 2000
/** How often a node whose inbox is over the bound is asked again for its length, in ms. */
const BACKLOG_POLL_MS = 20
/** One line per behind node per this many ms. */
const BEHIND_LOG_MS = 10_000

export interface ClusterOptions {
  readonly nodeId: string
  /** `redis.maxRouteBacklog`: messages waiting in one node's inbox before publishers sending it more wait. */
  readonly maxBacklog: number
  /** `redis.nodeTimeoutMs`: a node silent this long is removed with its routes and inbox. */
  readonly nodeTimeoutMs: number
  /** Told when a node's inbox passes `maxBacklog` (publishes to it start to wait). */
  readonly onBehind?: () => void
}

export interface ClusterConnections {
  /** Plain commands: scripts, XADD, XLEN, XTRIM. Commands wait through reconnects. */
  readonly commands: Redis
  /** Subscribed to the route channel; nothing else. */
  readonly subscriber: Redis
  /** The blocking inbox read; nothing else. */
  readonly reader: Redis
}

export interface ClusterEmitter {
  /** Handed to aedes as `mq`. */
  readonly mq: MQEmitter
  /** Whether a subscription of another node lives under the `$` top level `level`. */
  readonly remoteListens: (level: string) => boolean
  /** Join: the heartbeat, this node's routes, the others' routes, the inbox read. */
  readonly start: () => Promise<void>
  /** Leave the cluster and stop reading (before the connections close). */
  readonly stop: () => Promise<void>
  /** The route table, for tests and stats. */
  readonly routes: RouteTable
}

/**
 * Routing between nodes over Redis, by interest. Each node announces the filters its
 * subscribers hold (a route table every node keeps a copy of, current through a pub/sub
 * channel and read again whole after a gap or a reconnect). A message is delivered to
 * this node's subscribers in process; it goes through Redis only to nodes with a
 * matching filter, appended to each one's inbox stream. A node reads its inbox from a
 * cursor it keeps, so a reconnect of its Redis connections loses nothing, and trims what
 * it has delivered. An inbox over `maxBacklog` holds the emit callbacks of the messages
 * sent to it (aedes then reads no more from their publishers) until it is read down.
 */
export function createClusterEmitter (local: MQEmitter, conns: ClusterConnections, options: ClusterOptions, log: Logger): ClusterEmitter {
  const { nodeId } = options
  const routes = new RouteTable(nodeId)
  const commands = clusterCommands(conns.commands)
  const outbox = new Outbox(conns.commands, options, log)
  const ownRoutes = new OwnRoutes(commands, nodeId, log)
  let closed = false
  /** Settles when the node stops: a read that ioredis keeps for a reconnect is not waited for. */
  let stopped: () => void = () => {}
  const stopping = new Promise<undefined>((resolve) => { stopped = () => { resolve(undefined) } })
  let heartbeat: NodeJS.Timeout | undefined
  let reading: Promise<void> | undefined
  const resync = new Resync(commands, routes, log)

  conns.subscriber.on('message', function routeChange (channel: string, text: string) {
    if (channel !== ROUTE_CHANNEL) return
    const change = parseRouteChange(text)
    if (change === undefined) return
    if (change.op === 'x') outbox.forget(change.node)
    if (routes.apply(change) !== undefined) resync.run()
  })
  // after a reconnect (ioredis has subscribed again), changes may have been missed: read all
  conns.subscriber.on('ready', () => { if (!closed) resync.run() })
  // this node may have been taken for dead meanwhile: say again what it listens to
  conns.commands.on('ready', () => { if (!closed) void beat(true) })

  async function beat (always: boolean): Promise<void> {
    try {
      const fresh = await commands.heartbeat(nodeId, options.nodeTimeoutMs)
      if (fresh || always) await ownRoutes.announceAll()
    } catch (err: unknown) {
      if (!closed) log.debug({ err: messageOf(err) }, 'cluster heartbeat failed')
    }
  }

  const mq: MQEmitter = {
    get current () { return local.current },
    get concurrent () { return local.concurrent },
    on (topic, listener, done) {
      local.on(topic, listener)
      ownRoutes.add(topic, done)
      return mq
    },
    removeListener (topic: string, listener: Listener, done?: () => void) {
      local.removeListener(topic, listener)
      ownRoutes.remove(topic, done)
    },
    emit (message: Message, done?: (error?: Error) => void) {
      const nodes = closed ? NONE : routes.nodesFor(message.topic)
      if (nodes.length === 0) {
        local.emit(message, done)
        return
      }
      let left = nodes.length + 1
      const partDone = (): void => { if (--left === 0) done?.() }
      local.emit(message, partDone)
      const entry = pack(message)
      for (const node of nodes) outbox.send(node, entry, partDone)
    },
    close (done) {
      closed = true
      local.close(done)
    }
  }

  async function readInbox (): Promise<void> {
    const key = inboxKey(nodeId)
    let cursor = '0-0'
    while (!closed) {
      let reply: Array<[Buffer, Array<[Buffer, Buffer[]]>]> | null
      try {
        reply = await Promise.race([conns.reader.xreadBuffer('COUNT', READ_COUNT, 'BLOCK', READ_BLOCK_MS, 'STREAMS', key, cursor), stopping]) ?? null
      } catch (err: unknown) {
        if (closed) return
        log.debug({ err: messageOf(err) }, 'cluster inbox read failed: reading again from the same entry')
        await delay(100)
        continue
      }
      const entries = reply?.[0]?.[1]
      if (entries === undefined || entries.length === 0) continue
      await Promise.all(entries.map(async ([, fields]) => { await deliverLocally(fields) }))
      cursor = entries[entries.length - 1]?.[0].toString() ?? cursor
      // what is delivered leaves the inbox: its length is what this node has yet to deliver
      conns.commands.xtrim(key, 'MINID', cursor).catch(() => { /* the next read trims again */ })
    }
  }

  async function deliverLocally (fields: Buffer[]): Promise<void> {
    const encoded = fields[1]
    if (encoded === undefined) return
    let message: unknown
    try {
      message = unpack(encoded)
    } catch (err: unknown) {
      log.warn({ err: messageOf(err) }, 'cluster inbox entry is not a message: skipped')
      return
    }
    if (!isMessage(message)) return
    await new Promise<void>((resolve) => { local.emit(message, () => { resolve() }) })
  }

  return {
    mq,
    remoteListens: (level) => routes.listensUnder(level),
    routes,
    start: async () => {
      await conns.commands.del(inboxKey(nodeId))
      await beat(true)
      await resync.now()
      heartbeat = setInterval(() => { void beat(false) }, Math.max(100, Math.floor(options.nodeTimeoutMs / 3))).unref()
      reading = readInbox()
    },
    stop: async () => {
      closed = true
      stopped()
      clearInterval(heartbeat)
      outbox.close()
      try {
        if (conns.commands.status === 'ready') await commands.leave(nodeId)
      } catch { /* the others reap it */ }
      conns.reader.disconnect()
      await reading
    }
  }
}

const NONE: readonly string[] = []

/**
 * This node's filters: counted by listener, announced to the cluster when the first
 * listener of a filter comes and when its last one goes. The subscribe is answered
 * (SUBACK) once the route is in Redis.
 */
class OwnRoutes {
  readonly #counts = new Map<string, number>()

  constructor (private readonly commands: ClusterCommands, private readonly nodeId: string, private readonly log: Logger) {}

  add (filter: string, done: (() => void) | undefined): void {
    const count = (this.#counts.get(filter) ?? 0) + 1
    this.#counts.set(filter, count)
    if (count > 1) {
      done?.()
      return
    }
    this.#send('+', filter, done)
  }

  remove (filter: string, done: (() => void) | undefined): void {
    const count = (this.#counts.get(filter) ?? 0) - 1
    if (count > 0) {
      this.#counts.set(filter, count)
      done?.()
      return
    }
    if (count < 0) {
      done?.()
      return
    }
    this.#counts.delete(filter)
    this.#send('-', filter, done)
  }

  async announceAll (): Promise<void> {
    await this.commands.reset(this.nodeId, [...this.#counts.keys()])
  }

  #send (op: '+' | '-', filter: string, done: (() => void) | undefined): void {
    this.commands.route(this.nodeId, op, filter).then(() => { done?.() }, (err: unknown) => {
      // announced again whole when the connection is back
      this.log.debug({ err: messageOf(err), filter, op }, 'cluster route change not sent')
      done?.()
    })
  }
}

/** Reads every node's routes again; runs coalesce while one is under way. */
class Resync {
  #running: Promise<void> | undefined
  #again = false

  constructor (private readonly commands: ClusterCommands, private readonly routes: RouteTable, private readonly log: Logger) {}

  run (): void {
    if (this.#running !== undefined) {
      this.#again = true
      return
    }
    this.#running = this.now().finally(() => {
      this.#running = undefined
      if (this.#again) {
        this.#again = false
        this.run()
      }
    })
  }

  async now (): Promise<void> {
    try {
      const members = await this.commands.snapshot()
      const live = new Set(members.map((m) => m.node))
      for (const node of this.routes.nodes()) if (!live.has(node)) this.routes.drop(node)
      for (const { node, seq, filters } of members) this.routes.replace(node, seq, filters)
    } catch (err: unknown) {
      this.log.debug({ err: messageOf(err) }, 'cluster routes not read: read again after the reconnect')
    }
  }
}

interface Target {
  readonly key: string
  /** Entries waiting for this turn's write, with their callbacks. */
  entries: Buffer[]
  callbacks: Array<() => void>
  /** Callbacks held while the node's inbox is over the bound. */
  held: Array<() => void>
  behind: boolean
  poll: NodeJS.Timeout | undefined
}

/**
 * Writes to the other nodes' inboxes: the messages of one event-loop turn for one node
 * go as one pipeline (the entries and the inbox's length), one round trip.
 */
class Outbox {
  readonly #targets = new Map<string, Target>()
  readonly #behindLog = new LogSampler(BEHIND_LOG_MS)
  #scheduled = false
  #closed = false

  constructor (private readonly conn: Redis, private readonly options: ClusterOptions, private readonly log: Logger) {}

  send (node: string, entry: Buffer, done: () => void): void {
    let target = this.#targets.get(node)
    if (target === undefined) this.#targets.set(node, target = { key: inboxKey(node), entries: [], callbacks: [], held: [], behind: false, poll: undefined })
    target.entries.push(entry)
    target.callbacks.push(done)
    if (this.#scheduled) return
    this.#scheduled = true
    setImmediate(() => { this.#flush() })
  }

  /** The node is gone: nobody waits for its inbox any more. */
  forget (node: string): void {
    const target = this.#targets.get(node)
    if (target === undefined) return
    this.#targets.delete(node)
    this.#release(target)
  }

  close (): void {
    this.#closed = true
    for (const node of [...this.#targets.keys()]) this.forget(node)
  }

  #flush (): void {
    this.#scheduled = false
    for (const target of this.#targets.values()) {
      if (target.entries.length === 0) continue
      const { entries, callbacks } = target
      target.entries = []
      target.callbacks = []
      const pipeline = this.conn.pipeline()
      for (const entry of entries) pipeline.xadd(target.key, '*', 'm', entry)
      pipeline.xlen(target.key)
      pipeline.exec().then((results) => {
        const length = Number(results?.[results.length - 1]?.[1] ?? 0)
        this.#written(target, callbacks, length)
      }, (err: unknown) => {
        this.log.warn({ err: messageOf(err), inbox: target.key, messages: entries.length }, 'cluster messages not written to a node\'s inbox')
        for (const callback of callbacks) callback()
      })
    }
  }

  #written (target: Target, callbacks: Array<() => void>, length: number): void {
    if (!target.behind && length <= this.options.maxBacklog) {
      for (const callback of callbacks) callback()
      return
    }
    target.held.push(...callbacks)
    if (target.behind || this.#closed) {
      if (this.#closed) this.#release(target)
      return
    }
    target.behind = true
    this.options.onBehind?.()
    const suppressed = this.#behindLog.take(target.key)
    if (suppressed !== undefined) this.log.warn({ inbox: target.key, length, maxBacklog: this.options.maxBacklog, suppressed }, 'a node is behind on its cluster inbox: publishes routed to it wait')
    const check = (): void => {
      this.conn.xlen(target.key).then((now) => {
        // read down to half, so publishers are not let go and held again every poll
        if (now <= this.options.maxBacklog / 2 || this.#closed) this.#release(target)
        else target.poll = setTimeout(check, BACKLOG_POLL_MS)
      }, () => { target.poll = setTimeout(check, BACKLOG_POLL_MS) })
    }
    target.poll = setTimeout(check, BACKLOG_POLL_MS)
  }

  #release (target: Target): void {
    clearTimeout(target.poll)
    target.poll = undefined
    target.behind = false
    const held = target.held
    target.held = []
    for (const callback of held) callback()
  }
}

function isMessage (value: unknown): value is Message {
  return typeof value === 'object' && value !== null && typeof Reflect.get(value, 'topic') === 'string'
}

async function delay (ms: number): Promise<void> {
  await new Promise((resolve) => { setTimeout(resolve, ms).unref() })
}

function messageOf (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
