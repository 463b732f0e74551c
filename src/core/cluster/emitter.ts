import type { Redis } from 'ioredis'
import type { MQEmitter } from 'mqemitter'
import { pack } from 'msgpackr'
import { messageOf } from '../errors/base.js'
import type { Logger } from '../logger.js'
import { DISCARD_PREFIX } from '../reserved-topics.js'
import { Inbox } from './inbox.js'
import { Journal } from './journal.js'
import { Outbox, type OutboxOptions } from './outbox.js'
import { parseRouteChange, RouteTable } from './route-table.js'
import { clusterCommands, inboxKey, ROUTE_CHANNEL, type ClusterCommands } from './scripts.js'

type Message = Parameters<MQEmitter['emit']>[0]
type Listener = Parameters<MQEmitter['on']>[1]

export interface ClusterOptions extends OutboxOptions {
  readonly nodeId: string
  /** `redis.nodeTimeoutMs`: a node silent this long is removed with its routes and inbox, and its journal is finished by the node that noticed. */
  readonly nodeTimeoutMs: number
  /** Counts each event published again from a journal. */
  readonly onReplayed: () => void
  /** `redis.waitReplicas`: replicas a journal entry must be on before its event is acknowledged. */
  readonly waitReplicas: number
  /** `redis.outageHoldMs`: how long the commit waits for those replicas. */
  readonly holdMs: number
}

export interface ClusterConnections {
  /** Plain commands: scripts, XADD, XLEN, XTRIM. Commands wait through reconnects. */
  readonly commands: Redis
  /** Subscribed to the route channel; nothing else. */
  readonly subscriber: Redis
  /** The blocking inbox read; nothing else. */
  readonly reader: Redis
  /** The journal: commits (and their WAIT for replicas), deletions, replays. */
  readonly journal: Redis
}

/**
 * What shared subscriptions need of the cluster: each node announces its members as
 * routes (`$share-member/…`, never published to), learns the others' from the route
 * table, and sends a message for one member straight to that member's node inbox.
 */
export interface SharedLink {
  /** Announce (or withdraw) one member route of this node. */
  readonly announce: (route: string, joined: boolean) => void
  /** Append `message` (carrying its `shareTarget`) to `node`'s inbox; `done` once it is there, with an error if Redis refused it. */
  readonly send: (node: string, message: Message, done: (err?: Error) => void) => void
  /** Where this node's inbox hands the entries for its members, and who is told of the other nodes' member routes. */
  readonly attach: (receive: (message: Message, done: () => void) => void, member: (node: string, route: string, joined: boolean) => void) => void
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
  /** This node's journal of accepted events. */
  readonly journal: Journal
  /** Shared subscriptions across nodes. */
  readonly shared: SharedLink
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
  const resync = new Resync(commands, routes, log)
  const inbox = new Inbox(inboxKey(nodeId), local, conns.reader, conns.commands, log)
  const journal = new Journal(conns.journal, clusterCommands(conns.journal), options, log)
  const state: LinkState = { closed: false }
  let heartbeat: NodeJS.Timeout | undefined

  followRoutes(conns.subscriber, routes, outbox, resync, () => state.closed)
  // this node may have been taken for dead meanwhile: say again what it listens to
  conns.commands.on('ready', () => { if (!state.closed) void beat(true) })

  async function beat (always: boolean): Promise<void> {
    try {
      const { fresh, taken } = await commands.heartbeat(nodeId, options.nodeTimeoutMs)
      if (taken !== undefined) journal.takeOver(taken)
      if (fresh || always) await ownRoutes.announceAll()
    } catch (err: unknown) {
      if (!state.closed) log.debug({ err: messageOf(err) }, 'cluster heartbeat failed')
    }
  }

  const mq = routedEmitter(local, routes, ownRoutes, outbox, state)

  return {
    mq,
    remoteListens: (level) => routes.listensUnder(level),
    routes,
    journal,
    shared: sharedLink(routes, ownRoutes, outbox, inbox, state),
    start: async () => {
      // a node starts with an empty inbox: what a former process of this id was sent is not its
      await conns.commands.del(inboxKey(nodeId))
      await beat(true)
      await resync.now()
      heartbeat = setInterval(() => { void beat(false) }, Math.max(100, Math.floor(options.nodeTimeoutMs / 3))).unref()
      inbox.start()
    },
    stop: async () => {
      state.closed = true
      clearInterval(heartbeat)
      outbox.close()
      await within(journal.stop(), LEAVE_WAIT_MS)
      // commands wait through reconnects: a Redis that has just gone is not waited for (the others reap this node)
      if (conns.commands.status === 'ready') await within(commands.leave(nodeId).then(() => {}, () => {}), LEAVE_WAIT_MS)
      conns.reader.disconnect()
      await inbox.close()
    }
  }
}

/** Whether this node has left the cluster (set by `stop`, or by aedes closing its emitter). */
interface LinkState { closed: boolean }

/** The `mq` aedes is handed: local listeners, this node's routes announced, messages sent on to the nodes that listen. */
function routedEmitter (local: MQEmitter, routes: RouteTable, ownRoutes: OwnRoutes, outbox: Outbox, state: LinkState): MQEmitter {
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
      // a discarded packet (refused, or routed already by the commit) goes nowhere
      if (message.topic.startsWith(DISCARD_PREFIX)) {
        done?.()
        return
      }
      const nodes = state.closed ? NONE : routes.nodesFor(message.topic)
      if (nodes.length === 0) {
        local.emit(message, done)
        return
      }
      let left = nodes.length + 1
      // an inbox Redis refused fails a QoS 1/2 publish (not acked: sent again); QoS 0 is lost as MQTT allows, its publisher kept
      let failed: Error | undefined
      const partDone = (err?: Error): void => {
        if (Number(message.qos) > 0) failed ??= err
        if (--left === 0) done?.(failed)
      }
      local.emit(message, partDone)
      const entry = pack(message)
      for (const node of nodes) outbox.send(node, entry, partDone)
    },
    close (done) {
      state.closed = true
      local.close(done)
    }
  }
  return mq
}

function sharedLink (routes: RouteTable, ownRoutes: OwnRoutes, outbox: Outbox, inbox: Inbox, state: LinkState): SharedLink {
  return {
    announce: (route, joined) => {
      if (joined) ownRoutes.add(route, undefined)
      else ownRoutes.remove(route, undefined)
    },
    send: (node, message, done) => {
      if (state.closed) done(new Error('the cluster link is closed'))
      else outbox.send(node, pack(message), done)
    },
    attach: (receive, member) => {
      inbox.onShared = receive
      routes.onMember = member
    }
  }
}

/** Keep `routes` current from the route channel; after a reconnect (ioredis has subscribed again) changes may have been missed: read all. */
function followRoutes (subscriber: Redis, routes: RouteTable, outbox: Outbox, resync: Resync, closed: () => boolean): void {
  subscriber.on('message', function routeChange (channel: string, text: string) {
    if (channel !== ROUTE_CHANNEL) return
    const change = parseRouteChange(text)
    if (change === undefined) return
    if (change.op === 'x') outbox.forget(change.node)
    if (routes.apply(change) !== undefined) resync.run()
  })
  subscriber.on('ready', () => { if (!closed()) resync.run() })
}

const NONE: readonly string[] = []
/** How long a node stopping waits for Redis to take its leave, in ms. */
const LEAVE_WAIT_MS = 1000

async function within (promise: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  await Promise.race([promise, new Promise<void>((resolve) => { timer = setTimeout(resolve, ms).unref() })])
  clearTimeout(timer)
}

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
