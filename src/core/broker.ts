import { readFile } from 'node:fs/promises'
import type { Aedes } from 'aedes'
import type { Registry } from 'prom-client'
import proxyaddr from 'proxy-addr'
import { loadConfig, type ConfigSection, type CoreConfigInput, type LoadedConfig, type TlsFiles } from './config/index.js'
import type { BoundPorts, OutgoingMessage, PluginEntry, Transport } from './context.js'
import type { CloudEvent } from './cloudevents/envelope.js'
import { typeToTopic } from './cloudevents/topic.js'
import { ConfigError, DuplicateEventError, ListenError, messageOf } from './errors.js'
import { createHttpApi, type HttpApi } from './http/server.js'
import { createLogger, type Logger } from './logger.js'
import { LogSampler } from './log-sampler.js'
import { createNode, type Node } from './node.js'
import { startTracing, type Tracing } from './tracing/index.js'
import { mqttSubscribers } from './persistence/subscribers.js'
import { PluginHost } from './plugin-host.js'
import { publishStats } from './stats.js'
import { connectionHandler, listenMqttTransports, type ConnectionHandler } from './transport/accept.js'
import type { Listener } from './transport/mqtt-listener.js'
import { OutboundQueues, type Overflow } from './transport/outbound.js'
import { attachWebSocket } from './transport/websocket.js'
import { dashboardDir, packageVersion } from './version.js'

/**
 * The plugins a broker runs before the caller's, built from the config: the package
 * entry's `builtinPlugins()` gives the built-in ones. The core knows none of them.
 */
export type Preset = (config: LoadedConfig) => readonly PluginEntry[] | Promise<readonly PluginEntry[]>

/** `createBroker()` input: a partial config plus what only code can give. */
export interface BrokerInput extends CoreConfigInput {
  /** The config sections to load besides the core's and those of the plugins given (the package entry passes the built-in plugins'). */
  readonly sections?: readonly ConfigSection[]
  /** The plugins to load first, from the config. Default none here; the package entry's `createBroker` passes the built-in ones. */
  readonly preset?: Preset
  /** Plugins, loaded in this order after the preset's: `[myPlugin(options)]`. Default none. */
  readonly plugins?: readonly PluginEntry[]
  /** A pino logger to use instead of one built from `logLevel`. */
  readonly logger?: Logger
  /** Longest a plugin's setup may take, in ms. Default 10 000. */
  readonly pluginTimeoutMs?: number
}

export type { BoundPorts } from './context.js'

/** A running broker. */
export interface Broker {
  readonly config: LoadedConfig
  readonly nodeId: string
  readonly ports: BoundPorts
  readonly log: Logger
  /** This broker's prom-client registry, as served on `/metrics`. */
  readonly metrics: Registry
  /** The Aedes instance, for hooks and events ce-broker does not wrap. Its hook slots belong to ce-broker. */
  readonly aedes: Aedes
  /**
   * Publish as a client would, through the same pipeline: a CloudEvent goes to the
   * topic its `type` maps to (QoS 1); a message to its own topic. A refused one
   * is dead-lettered or diverted as a client's would be, and the promise rejects
   * with its `BrokerError` (its `reason` says why, for events). A duplicate of an
   * event accepted within the idempotency window resolves, and goes nowhere.
   */
  publish: (input: OutgoingMessage | CloudEvent) => Promise<void>
  /** Stop listening, close clients, dispose plugins, release persistence. Safe to call twice. */
  close: () => Promise<void>
}

/** Room in a WebSocket message beyond the payload limit: fixed header, topic (up to 64 KiB), packet id. */
const WS_FRAME_HEADROOM = 64 * 1024 + 16
const DEFAULT_PLUGIN_TIMEOUT_MS = 10_000
/** Longest `close()` waits for aedes to close its clients and message routing. */
const AEDES_CLOSE_TIMEOUT_MS = 5_000
/** A slow consumer's overflow is logged at most once per client per this interval. */
const SLOW_CONSUMER_LOG_MS = 60_000
/** The line a slow consumer gets, by what happened. */
const SLOW_CONSUMER_LINES: Readonly<Record<Overflow['action'], string>> = {
  slow: 'slow consumer: its writes waited limits.slowConsumerMs, publishers no longer wait for it',
  dropped: 'slow consumer: its outbound queue is full, QoS 0 messages for it are dropped',
  held: 'slow consumer: its outbound queue is full, QoS 1/2 messages wait in its session until it reconnects',
  disconnected: 'slow consumer: its outbound queue is full, clean-session client disconnected'
}

/** What a running broker holds open, released by `close()` in this order. */
interface Opened {
  stats?: { stop: () => void }
  outbound?: OutboundQueues
  websocket?: { close: () => void }
  listeners: Listener[]
  http?: HttpApi
  listening: boolean
  /** Set once every listener is up. */
  ports?: BoundPorts
}

/**
 * Start a broker: validate the config, build persistence and aedes, load the preset's
 * plugins and then the caller's, in order, then open the MQTT/TCP, MQTT/TLS and
 * HTTP(+WebSocket) listeners. Resolves once every listener is bound; throws a
 * `ConfigError` or `PluginError` (after releasing whatever it had opened) when it
 * cannot start.
 */
export async function createBroker (input: BrokerInput = {}): Promise<Broker> {
  const { preset, plugins: entries = [], logger, pluginTimeoutMs = DEFAULT_PLUGIN_TIMEOUT_MS, sections = [], ...rest } = input
  const config: LoadedConfig = loadConfig(rest, { sections: [...new Set([...sections, ...entries.flatMap((entry) => entry.sections ?? [])])] })
  const log = logger ?? createLogger(config.logLevel, config.nodeId)
  const [mqttTls, httpTls] = await Promise.all([readTls('mqtt.tls', config.mqtt.tls), readTls('http.tls', config.http.tls)])
  const tracing = await startTracing(config.tracing, { nodeId: config.nodeId, version: packageVersion(), log: log.child({ component: 'tracing' }) })
  const node = createNode(config, log, tracing)
  const { aedes, backend, metrics } = node
  tracing?.register(metrics.registry)
  const plugins = new PluginHost({
    config,
    log,
    hooks: node.chains.registry,
    metrics: metrics.registry,
    redis: backend.redis,
    publish: node.publish,
    submit: node.submit,
    keep: node.keep,
    listening: backend.listening,
    countEvent: (outcome, reason) => { metrics.event(outcome, reason) },
    subscribers: async (topic) => await mqttSubscribers(aedes, backend, topic),
    ports: () => opened.ports,
    reportError: node.reportError,
    tracing: tracing?.plugin,
    timeoutMs: pluginTimeoutMs
  })
  const opened: Opened = { listeners: [], listening: false }
  let closing: Promise<void> | undefined
  const close = async (): Promise<void> => {
    closing ??= closeAll(node, plugins, opened, log, tracing)
    await closing
  }

  try {
    await backend.started()
    await aedes.listen()
    await plugins.load([...await preset?.(config) ?? [], ...entries])
    // what a former process of this node acknowledged and did not finish, finished before anything new
    await backend.journal?.start(node.gate.replay)
    const queues = new OutboundQueues(config.limits, slowConsumerReporter(node, log), { check: node.forward, persistence: backend.persistence, reportError: (err, context) => { node.reportError('outbound', err, context) } })
    opened.outbound = queues
    node.shared.useLoad((client) => queues.load(client))
    const handle = connectionHandler({
      aedes,
      limits: config.limits,
      connections: node.connections,
      queues,
      packetGuards: node.packetGuards,
      metrics,
      log,
      sampler: node.clientLog,
      tooLarge: (info, transport, clientId) => { node.gate.tooLarge(info.topic ?? '', info.payloadBytes, info.limit, { origin: transport, clientId }) }
    })
    const mqtt = await listenMqttTransports(config, mqttTls, handle, metrics, log)
    opened.listeners.push(mqtt.tcp, ...(mqtt.tls === undefined ? [] : [mqtt.tls]))
    const httpPort = await listenHttpApi(config, httpTls, node, plugins, opened, handle, log)
    opened.listening = true
    opened.stats = publishStats({
      nodeId: config.nodeId,
      collect: () => collectStats(node, plugins),
      publish: async (topic, payload) => { await node.publish({ topic, payload }) },
      log
    })
    const ports: BoundPorts = { mqtt: mqtt.tcp.port, http: httpPort, ...(mqtt.tls === undefined ? {} : { mqttTls: mqtt.tls.port }) }
    opened.ports = ports
    log.info({ mqttPort: ports.mqtt, httpPort: ports.http, ...(ports.mqttTls === undefined ? {} : { mqttTlsPort: ports.mqttTls }), persistence: backend.kind }, 'ready')
    return { config, nodeId: config.nodeId, ports, log, metrics: metrics.registry, aedes, publish: publisher(node), close }
  } catch (err: unknown) {
    await close().catch((closeErr: unknown) => { log.error({ err: closeErr }, 'cleanup after a failed start failed') })
    throw err
  }
}

/** The HTTP API and MQTT over WebSocket on it; resolves the bound port. */
async function listenHttpApi (config: LoadedConfig, httpTls: { key: Buffer, cert: Buffer } | undefined, node: Node, plugins: PluginHost, opened: Opened, handle: ConnectionHandler, log: Logger): Promise<number> {
  const { metrics } = node
  const http = await createHttpApi(httpSources(config, node, plugins, opened, log), {
    bodyLimit: config.limits.httpBodyBytes,
    apiKeys: config.auth.apiKeys,
    publicMetrics: config.http.publicMetrics,
    ...(config.http.trustProxy === undefined ? {} : { trustProxy: config.http.trustProxy }),
    ...(httpTls === undefined ? {} : { tls: httpTls })
  })
  opened.http = http
  const wsTransport: Transport = httpTls === undefined ? 'ws' : 'wss'
  const trustProxy = config.http.trustProxy === undefined ? undefined : proxyaddr.compile(config.http.trustProxy.split(/ *, */))
  opened.websocket = attachWebSocket(http.server, {
    log,
    // a WebSocket message is read whole before MQTT sees it: bound it by the largest PUBLISH allowed
    maxPayload: config.limits.maxPayloadBytes + WS_FRAME_HEADROOM,
    // behind a trusted proxy the client is the one X-Forwarded-For names
    onConnection: (stream, socket, req) => { handle(stream, socket, wsTransport, trustProxy === undefined ? socket.remoteAddress : proxyaddr(req, trustProxy), req) },
    onOversize: () => { metrics.limitHit('ws_message') }
  })
  return await listenHttp(http, config.http.host, config.http.port)
}

/** `broker.publish`: a CloudEvent to the topic of its type at QoS 1, a message to its own topic, through the whole pipeline. */
function publisher (node: Node): Broker['publish'] {
  return async function publish (input) {
    const message: OutgoingMessage = isOutgoingMessage(input)
      ? input
      : { topic: typeToTopic(input.type), payload: JSON.stringify(input), qos: 1 }
    const refusal = await node.submit(message, { origin: 'internal' })
    // a duplicate was accepted before: like MQTT's ack and HTTP's 200, not a failure
    if (refusal !== undefined && !(refusal instanceof DuplicateEventError)) throw refusal
  }
}

/** What the core's HTTP routes read, and the plugins' routes. */
function httpSources (config: LoadedConfig, node: Node, plugins: PluginHost, opened: Opened, log: Logger): Parameters<typeof createHttpApi>[0] {
  const { backend, gate, chains } = node
  return {
    log: log.child({ component: 'http' }),
    metrics: node.metrics.registry,
    nodeId: config.nodeId,
    version: packageVersion(),
    startedAt: new Date(),
    persistence: backend.kind,
    connectedClients: () => connectedClients(node),
    readiness: () => readiness(opened.listening, node),
    retained: backend.retained,
    submit: node.submit,
    keep: node.keep,
    tooLarge: (topic, payloadBytes) => { gate.tooLarge(topic, payloadBytes, config.limits.maxPayloadBytes, { origin: 'http' }) },
    maxPayloadBytes: config.limits.maxPayloadBytes,
    httpBodyBytes: config.limits.httpBodyBytes,
    cloudEventTopic: (topic) => chains.cloudEventTopics.some((isEventTopic) => isEventTopic(topic)),
    dashboardDir: dashboardDir(),
    pluginRoutes: plugins.routes
  }
}

function collectStats (node: Node, plugins: PluginHost): { clients: number, events: ReturnType<Node['metrics']['eventTotals']>, [key: string]: unknown } {
  const contributed: Record<string, unknown> = {}
  for (const [key, collect] of plugins.stats) contributed[key] = collect()
  return { ...contributed, clients: connectedClients(node), events: node.metrics.eventTotals() }
}

function connectedClients (node: Node): number {
  return [...node.clientCounts.values()].reduce((a, b) => a + b, 0)
}

/** A slow consumer is logged once per client per minute, never per message: one client's misery is not the log's. */
function slowConsumerReporter (node: Node, log: Logger): (overflow: Overflow) => void {
  const slowLog = new LogSampler(SLOW_CONSUMER_LOG_MS)
  return function slowConsumer (overflow) {
    node.metrics.limitHit(overflow.limit)
    if (overflow.action === 'dropped' || overflow.action === 'disconnected') node.metrics.dropped('slow_consumer')
    const clientId = overflow.client.id
    const suppressed = slowLog.take(clientId)
    if (suppressed === undefined) return
    log.warn({ clientId, action: overflow.action, limit: overflow.limit, queued: overflow.queued, queuedBytes: overflow.queuedBytes, suppressed }, SLOW_CONSUMER_LINES[overflow.action])
  }
}

/** Stop listening, close clients, dispose plugins, release persistence; each step once. */
async function closeAll (node: Node, plugins: PluginHost, opened: Opened, log: Logger, tracing: Tracing | undefined): Promise<void> {
  opened.listening = false
  opened.stats?.stop()
  opened.outbound?.close()
  node.backend.closing()
  opened.websocket?.close()
  // stop accepting now; a server's close callback waits for its open sockets, which aedes closes next
  const listenersClosed = Promise.all(opened.listeners.map(async (listener) => { await listener.close() }))
  // aedes.close ends with mq.close, which waits for Redis to confirm QUIT: bounded, so a
  // broker whose Redis is gone still shuts down (backend.close then drops the connections)
  const aedesClosed = new Promise<void>((resolve) => { node.aedes.close(() => { resolve() }) })
  if (!await settlesWithin(aedesClosed, AEDES_CLOSE_TIMEOUT_MS)) log.warn({ timeoutMs: AEDES_CLOSE_TIMEOUT_MS }, 'aedes did not close in time; closing connections anyway')
  node.connections.destroyAll()
  await listenersClosed
  // each plugin's stop is bounded by pluginTimeoutMs: one that hangs does not keep the others' connections open
  await plugins.dispose()
  await opened.http?.close()
  await node.backend.close()
  // last: the spans of what was still delivered while closing are exported too
  await tracing?.shutdown().catch((err: unknown) => { log.warn({ err }, 'the last spans could not be exported') })
  log.info('closed')
}

/** Whether `promise` settled within `ms`; the timer never keeps the process alive. */
async function settlesWithin (promise: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const timedOut = new Promise<false>((resolve) => { timer = setTimeout(() => { resolve(false) }, ms).unref() })
  try {
    return await Promise.race([promise.then(() => true), timedOut])
  } finally {
    clearTimeout(timer)
  }
}

async function readTls (path: string, files: TlsFiles | undefined): Promise<{ key: Buffer, cert: Buffer } | undefined> {
  if (files === undefined) return undefined
  const read = async (key: 'key' | 'cert'): Promise<Buffer> => {
    try {
      return await readFile(files[key])
    } catch (err: unknown) {
      throw new ConfigError('config', `${path}.${key}`, `cannot read ${JSON.stringify(files[key])}: ${messageOf(err)}`, { cause: err })
    }
  }
  return { key: await read('key'), cert: await read('cert') }
}

async function listenHttp (http: HttpApi, host: string, port: number): Promise<number> {
  const server = http.server
  await new Promise<void>((resolve, reject) => {
    const failed = (err: Error): void => { reject(new ListenError('HTTP', `${host}:${port}`, { cause: err })) }
    server.once('error', failed)
    server.listen(port, host, () => {
      server.off('error', failed)
      resolve()
    })
  })
  const address = server.address()
  return typeof address === 'object' && address !== null ? address.port : port
}

function readiness (listening: boolean, node: Node): Record<string, boolean> {
  const checks: Record<string, boolean> = { listeners: listening }
  if (node.backend.kind === 'redis') checks.redis = node.backend.ready()
  return checks
}

function isOutgoingMessage (input: OutgoingMessage | CloudEvent): input is OutgoingMessage {
  return !('specversion' in input)
}
