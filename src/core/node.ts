import { EventEmitter } from 'node:events'
import { Aedes, type AedesOptions, type Client, type PublishPacket } from 'aedes'
import type { LoadedConfig as BrokerConfig } from './config/index.js'
import type { OutgoingMessage, SubmitOptions, Transport } from './context.js'
import { toBrokerError, type BrokerError } from './errors.js'
import { PublishRate } from './transport/publish-rate.js'
import { createPublishGate, type PublishGate } from './hooks/authorize-publish.js'
import { adaptAuthorizeSubscribe, type SubscribeGate } from './hooks/authorize-subscribe.js'
import { HookChains } from './pipeline/chain.js'
import { adaptConnect } from './hooks/connect.js'
import { adaptAuthorizeForward, forwardCheck, type ForwardCheck } from './hooks/forward.js'
import { adaptPublished } from './hooks/published.js'
import type { Logger } from './logger.js'
import { LogSampler } from './log-sampler.js'
import { CoreMetrics } from './metrics.js'
import { keepEmitOrder } from './emit-order.js'
import { DEFAULT_OUTAGE_HOLD_MS, createBackend, type Backend } from './persistence/index.js'
import { SharedSubscriptions } from './shared/dispatch.js'
import { watchMembers } from './shared/members.js'
import { Connections } from './transport/connections.js'
import { REJECTIONS_PREFIX } from './reserved-topics.js'
import type { PacketGuard } from './transport/size-guard.js'
import type { Tracing } from './tracing/index.js'

/** Reports a failure that has no caller to return to: counted by component, logged. */
export type ErrorReporter = (component: string, err: unknown, context?: Readonly<Record<string, unknown>>) => void

/**
 * One node's MQTT side before it listens: persistence, aedes with ce-broker's hook
 * adapters in its slots, the hook chains plugins fill, the publish gate, metrics.
 */
export interface Node {
  readonly aedes: Aedes
  readonly backend: Backend
  readonly chains: HookChains
  readonly gate: PublishGate
  readonly connections: Connections
  readonly metrics: CoreMetrics
  /** Connected MQTT clients per transport. */
  readonly clientCounts: ReadonlyMap<Transport, number>
  /** The warn lines a client can trigger, sampled per client (`limits.clientLogIntervalMs`). */
  readonly clientLog: LogSampler
  /** Whether a message may be written to one subscriber (the `forward` chain). */
  readonly forward: ForwardCheck
  /** Shared subscriptions (`$share/<group>/<filter>`): told how full each client's outbound queue is once the queues exist. */
  readonly shared: SharedSubscriptions
  /** Each connection's packet guard, told when its CONNECT is accepted. */
  readonly packetGuards: WeakMap<Client, PacketGuard>
  readonly reportError: ErrorReporter
  /** Publish without the chain (the broker's own `$` topics, records); resolves once routed. */
  readonly publish: (message: OutgoingMessage) => Promise<void>
  /** The whole pipeline for a broker-side publish: check, then route what was accepted or diverted. */
  readonly submit: (message: OutgoingMessage, options: SubmitOptions) => Promise<BrokerError | undefined>
  /** Dead-letter what was refused before the chain could run. */
  readonly keep: (message: OutgoingMessage, error: BrokerError, options: SubmitOptions) => void
}

interface WatchDeps {
  readonly mq: Parameters<typeof keepEmitOrder>[1]
  readonly connections: Connections
  readonly clientCounts: Map<Transport, number>
  readonly subscribeGate: SubscribeGate
  readonly metrics: CoreMetrics
  readonly log: Logger
  readonly clientLog: LogSampler
  readonly reportError: ErrorReporter
}

/** What the node follows of aedes' events; returns where each connection's packet guard is found when its CONNECT is accepted. */
function watchAedes (aedes: Aedes, deps: WatchDeps): WeakMap<Client, PacketGuard> {
  // aedes drops a packet that a later-numbered one overtook (a QoS 0 one passing a QoS 1 one): see emit-order.ts
  keepEmitOrder(aedes, deps.mq)
  countClients(aedes, deps.connections, deps.clientCounts)
  // a SUBSCRIBE's filters are held now: the limit counts them from the client's subscriptions
  aedes.on('subscribe', function subscribed (_subs: unknown, client: Client) { deps.subscribeGate.settled(client) })
  const packetGuards = new WeakMap<Client, PacketGuard>()
  aedes.on('connackSent', function connectAccepted (packet, client) {
    // aedes emits it for refusals too (CONNACK 1–5), which are followed by a close
    if (packet.returnCode === 0) packetGuards.get(client)?.accepted()
  })
  watchClientErrors(aedes, deps)
  return packetGuards
}

/** Build a node: nothing listens and nothing is loaded yet. */
export function createNode (config: BrokerConfig, log: Logger, tracing?: Tracing): Node {
  const connections = new Connections()
  const clientCounts = new Map<Transport, number>()
  const metrics = new CoreMetrics(connections, () => clientCounts)
  const chains = new HookChains()
  const backend = createBackend(config, log, { limitHit: (limit) => { metrics.limitHit(limit) }, journalReplayed: () => { metrics.journalReplayed() } })
  const reportError = makeErrorReporter(log, metrics, backend.ready)
  const clientLog = new LogSampler(config.limits.clientLogIntervalMs)
  const { limits } = config
  const parts: NodeParts = { config, log, chains, backend, connections, metrics, clientLog, reportError, tracing }
  const connect = connectHooks(parts)
  const gate = publishGate(parts, {
    publishRecord: (topic, record) => {
      publishPacket(toPacket({ topic, payload: record, qos: 1 })).catch((err: unknown) => { reportError('dead-letter', err, { topic }) })
    },
    tell: async (clientId, record) => { await publishPacket(toPacket({ topic: REJECTIONS_PREFIX + clientId, payload: record, qos: 1 })) },
    route: (packet, client, done) => { publishFor(aedes, packet, client, done) }
  })
  const forward = forwardCheck(connections, { chain: chains.forward, reportError: (err, context) => { reportError('forward', err, context) } })
  const shared = new SharedSubscriptions({ nodeId: config.nodeId, persistence: backend.persistence, registry: metrics.registry, log, sampler: clientLog, reportError: (err, context) => { reportError('shared', err, context) }, link: backend.shared })
  const sharedGroupAdmits = (group: string, filter: string, max: number): ReturnType<SharedSubscriptions['admits']> => shared.admits(group, filter, max)
  const subscribeGate = adaptAuthorizeSubscribe({ chain: chains.authorizeSubscribe, connections, limits, metrics, log, sampler: clientLog, sharedGroupAdmits })
  // every message emitted is offered to the shared subscription groups on its way to the subscribers
  const mq = shared.wrap(backend.mq)
  const aedes = new Aedes({
    id: config.nodeId,
    persistence: backend.persistence,
    mq,
    ...connect,
    authorizePublish: gate.hook,
    authorizeSubscribe: subscribeGate.hook,
    ...aedesLimits(limits),
    authorizeForward: adaptAuthorizeForward(connections, metrics, forward),
    published: adaptPublished(chains.published, (err, context) => { reportError('published', err, context) }, tracing)
  })
  watchMembers(aedes, shared)
  const packetGuards = watchAedes(aedes, { mq, connections, clientCounts, subscribeGate, metrics, log, clientLog, reportError })

  async function publishPacket (packet: PublishPacket, client: Client | null = null): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      publishFor(aedes, packet, client, (err) => { if (err === undefined || err === null) resolve(); else reject(err) })
    })
  }
  return {
    aedes,
    backend,
    chains,
    gate,
    connections,
    metrics,
    clientCounts,
    clientLog,
    forward,
    shared,
    packetGuards,
    reportError,
    publish: async (message) => { await publishPacket(toPacket(message)) },
    submit: async (message, options) => {
      const packet = toPacket(message)
      const refusal = await gate.check(packet, options)
      if (refusal === undefined || refusal.disposition !== 'reject') await publishPacket(packet)
      return refusal
    },
    keep: (message, error, options) => { gate.keep(toPacket(message), error, options) }
  }
}

/** What a node is built from, handed to the helpers that build its hooks. */
interface NodeParts {
  readonly config: BrokerConfig
  readonly log: Logger
  readonly chains: HookChains
  readonly backend: Backend
  readonly connections: Connections
  readonly metrics: CoreMetrics
  readonly clientLog: LogSampler
  readonly reportError: ErrorReporter
  /** With `tracing.otlpUrl`: the spans of each publish. */
  readonly tracing: Tracing | undefined
}

/** aedes' preConnect and authenticate slots, running the plugins' chains. */
function connectHooks ({ chains, reportError, connections, log, backend, clientLog }: NodeParts): ReturnType<typeof adaptConnect> {
  return adaptConnect({
    preConnect: chains.preConnect,
    authenticate: chains.authenticate,
    refused: chains.connectRefused,
    reportError: (err, context) => { reportError('connectRefused', err, context) },
    connections,
    log,
    available: backend.ready,
    sampler: clientLog
  })
}

type GateRouting = Pick<Parameters<typeof createPublishGate>[0], 'publishRecord' | 'tell' | 'route'>

/** The publish gate in aedes' authorizePublish slot, with the limits, the outage hold and the journal of this node's config. */
function publishGate ({ config, chains, reportError, connections, metrics, log, backend, clientLog, tracing }: NodeParts, routing: GateRouting): PublishGate {
  const { limits } = config
  const idleThrew = (err: unknown, handler: string): void => { reportError('plugin', err, { hook: 'authorizePublish idle', handler }) }
  return createPublishGate({
    chain: chains.authorizePublish,
    chainIdle: () => chains.publishIdle(idleThrew),
    decided: chains.decided,
    reportError: (err, context) => { reportError('decided', err, context) },
    deadLetter: () => chains.deadLetter,
    ...routing,
    connections,
    rate: limits.publishRatePerClient > 0 ? new PublishRate(limits.publishRatePerClient, limits.publishBurstPerClient) : undefined,
    metrics,
    log,
    maxTopicBytes: limits.maxTopicBytes,
    maxTopicLevels: limits.maxTopicLevels,
    rejectionWaitMs: limits.rejectionWaitMs,
    available: backend.ready,
    whenAvailable: backend.whenReady,
    holdMs: config.redis?.outageHoldMs ?? DEFAULT_OUTAGE_HOLD_MS,
    sampler: clientLog,
    journal: backend.journal,
    received: async (client, packet) => await storedIncoming(backend, client, packet),
    tracing
  })
}

/**
 * aedes' publish as `client`'s: it takes the client as a middle argument (its protocol
 * handlers pass it; it sets the packet's clientId and reaches the `published` hook), which
 * the shipped types leave out.
 */
function publishFor (aedes: Aedes, packet: PublishPacket, client: Client | null, callback: (err?: Error | null) => void): void {
  const publish: unknown = Reflect.get(aedes, 'publish')
  if (typeof publish !== 'function') throw new TypeError('aedes has no publish method')
  // call(), not Reflect.apply(): no arguments array on the path of every acked message
  publish.call(aedes, packet, client, callback)
}

/**
 * Whether the persistence holds this incoming QoS 2 packet (by client and packet id). aedes
 * 1 calls its persistence's promise form (a rejection: not there); the persistence's
 * types declare the callback form.
 */
async function storedIncoming (backend: Backend, client: Client, packet: PublishPacket): Promise<boolean> {
  const get: unknown = Reflect.get(backend.persistence, 'incomingGetPacket')
  if (typeof get !== 'function') throw new TypeError('the persistence has no incomingGetPacket')
  return await Promise.resolve(Reflect.apply(get, backend.persistence, [client, packet])).then(() => true, () => false)
}

/** The limits aedes enforces itself, from `limits`. */
function aedesLimits (limits: BrokerConfig['limits']): Pick<AedesOptions, 'maxTopicLevels' | 'keepaliveLimit' | 'drainTimeout' | 'connectTimeout' | 'maxInflightInbound'> {
  return {
    // aedes' own ceiling (its matchers hold 100 levels at most), which would close the client
    // before authorizeSubscribe could answer SUBACK 0x80: limits.maxTopicLevels is checked by
    // the publish gate and the subscribe adapter instead
    maxTopicLevels: 100,
    keepaliveLimit: limits.maxKeepaliveSeconds,
    drainTimeout: limits.drainTimeoutMs,
    connectTimeout: limits.connectTimeoutMs,
    maxInflightInbound: limits.maxInflightInbound
  }
}

/**
 * Errors aedes raises for clients and connections: ours (a limit of `limits`) are
 * counted and logged sampled per address; the rest are at debug. Persistence failures
 * come as aedes' 'error' event.
 */
function watchClientErrors (aedes: Aedes, deps: { connections: Connections, metrics: CoreMetrics, log: Logger, clientLog: LogSampler, reportError: ErrorReporter }): void {
  const { connections, metrics, log, clientLog } = deps
  /** Clients already counted over a limit: a drain timeout fails each pending write with the same error. */
  const overLimit = new WeakSet<Client>()
  aedes.on('clientError', function clientError (client: Client, err: Error) {
    const limit = aedesLimit(err)
    if (limit === undefined) log.debug({ clientId: client.id, err }, 'client error')
    else if (!overLimit.has(client)) {
      overLimit.add(client)
      metrics.limitHit(limit)
      // once per connection, and connections come in floods: sampled per address
      const remoteAddress = connections.metaOf(client)?.remoteAddress
      const suppressed = clientLog.take(`address ${remoteAddress ?? ''}`)
      if (suppressed !== undefined) log.warn({ clientId: client.id, remoteAddress, limit, detail: err.message, ...(suppressed === 0 ? {} : { suppressed }) }, 'client disconnected: over a limit')
    }
  })
  aedes.on('connectionError', function connectionError (_client: Client, err: Error) {
    const limit = aedesLimit(err)
    if (limit !== undefined) metrics.limitHit(limit)
    log.debug({ err }, 'connection error before CONNECT')
  })
  // aedes emits 'error' for persistence failures; its types leave the event out
  EventEmitter.prototype.on.call(aedes, 'error', function aedesError (err: Error) { deps.reportError('aedes', err) })
}

/** Keep a count of connected MQTT clients per transport for the metrics gauge. */
function countClients (aedes: Aedes, connections: Connections, counts: Map<Transport, number>): void {
  const add = (client: Client, delta: number): void => {
    const transport = connections.metaOf(client)?.transport
    if (transport !== undefined) counts.set(transport, (counts.get(transport) ?? 0) + delta)
  }
  aedes.on('client', function clientConnected (client: Client) { add(client, 1) })
  aedes.on('clientDisconnect', function clientDisconnected (client: Client) { add(client, -1) })
}

/**
 * Errors are counted and logged. While Redis is unreachable every Redis command and
 * connection fails, and the outage itself is logged once (its start and its end):
 * those failures are counted and logged at debug only, not once per retry.
 */
function makeErrorReporter (log: Logger, metrics: CoreMetrics, backendReady: () => boolean): ErrorReporter {
  return function reportError (component, err, context = {}) {
    metrics.error(component)
    if (backendReady()) log.error({ err: toBrokerError(err), component, ...context }, `${component} error`)
    else log.debug({ err: toBrokerError(err), component, ...context }, `${component} error while redis is unreachable`)
  }
}

export function toPacket (message: OutgoingMessage): PublishPacket {
  return {
    cmd: 'publish',
    topic: message.topic,
    payload: typeof message.payload === 'string' ? Buffer.from(message.payload) : message.payload,
    qos: message.qos ?? 0,
    retain: message.retain ?? false,
    dup: false
  }
}

/** Which limit an error aedes raised for a client enforces, when it is one of ours (`limits.*`). */
function aedesLimit (err: Error): string | undefined {
  const message = err.message
  if (message === 'drain timeout') return 'drain_timeout'
  if (message === 'topic has too many levels') return 'topic_levels'
  if (message === 'keep alive limit exceeded') return 'keepalive'
  if (message.startsWith('maxInflightInbound exceeded')) return 'inflight_inbound'
  return undefined
}
