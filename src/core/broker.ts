import { EventEmitter } from 'node:events'
import { readFile } from 'node:fs/promises'
import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { Aedes, type Client, type PublishPacket } from 'aedes'
import { Counter, type Registry } from 'prom-client'
import { loadConfig, type BrokerConfig, type ConfigInput, type TlsFiles } from './config.js'
import { ConfigError, DuplicateEventError, ListenError, messageOf, toBrokerError, type BrokerError } from './errors.js'
import { createPublishGate } from './hooks/authorize-publish.js'
import { adaptAuthorizeSubscribe } from './hooks/authorize-subscribe.js'
import { HookChains } from './pipeline/chain.js'
import { adaptConnect } from './hooks/connect.js'
import { adaptAuthorizeForward, forwardCheck } from './hooks/forward.js'
import { adaptPublished } from './hooks/published.js'
import { createHttpApi, type HttpApi } from './http/server.js'
import { createLogger, type Logger } from './logger.js'
import { CoreMetrics } from './metrics.js'
import { createBackend, type Backend } from './persistence/index.js'
import { MemoryDeadLetterStore, type DeadLetterStore } from './persistence/dead-letters.js'
import { RedisDeadLetterStore } from './persistence/redis-dead-letters.js'
import { builtinPlugins } from '../preset.js'
import { WebhookRegistry } from '../../plugins/webhooks/index.js'
import { MemoryAuditTrail, RedisAuditTrail } from '../../plugins/audit/index.js'
import type { OutgoingMessage, PluginEntry, SubmitOptions, Transport } from './context.js'
import type { CloudEvent } from './cloudevents/envelope.js'
import { cloudEventTopics, typeToTopic } from './cloudevents/topic.js'
import { PluginLoader } from './plugin-loader.js'
import { Connections } from './transport/connections.js'
import { listenMqtt, type Listener } from './transport/mqtt-listener.js'
import { attachWebSocket } from './transport/websocket.js'
import { guardPacketSize, type PacketGuard } from './transport/size-guard.js'
import { Admission } from './transport/admission.js'
import { OutboundQueues, type Overflow } from './transport/outbound.js'
import { LogSampler } from './log-sampler.js'
import { keepEmitOrder } from './emit-order.js'
import { readProxyHeader } from './transport/proxy-protocol.js'
import proxyaddr from 'proxy-addr'
import { dashboardDir, packageVersion } from './version.js'
import { buildCatalog } from './catalog.js'
import { mqttSubscribers } from './persistence/subscribers.js'
import { publishStats } from './stats.js'

/** `createBroker()` input: a partial config plus what only code can give. */
export interface BrokerInput extends ConfigInput {
  /** Plugins, loaded in this order after the built-in ones: `[myPlugin(options)]`. Default none. */
  readonly plugins?: readonly PluginEntry[]
  /** A pino logger to use instead of one built from `logLevel`. */
  readonly logger?: Logger
  /** Longest a plugin's setup may take, in ms. Default 10 000. */
  readonly pluginTimeoutMs?: number
}

/** The ports the broker actually bound (port 0 in the config picks a free one). */
export interface BoundPorts {
  readonly mqtt: number
  readonly http: number
  readonly mqttTls?: number
}

/** A running broker. */
export interface Broker {
  readonly config: BrokerConfig
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
/** `redis.outageHoldMs` when not set: how long a publish waits for an unreachable Redis. */
const DEFAULT_OUTAGE_HOLD_MS = 10_000
/** A slow consumer's overflow is logged at most once per client per this interval. */
const SLOW_CONSUMER_LOG_MS = 60_000
/** The line a slow consumer gets, by what happened. */
const SLOW_CONSUMER_LINES: Readonly<Record<Overflow['action'], string>> = {
  slow: 'slow consumer: its writes waited limits.slowConsumerMs, publishers no longer wait for it',
  dropped: 'slow consumer: its outbound queue is full, QoS 0 messages for it are dropped',
  held: 'slow consumer: its outbound queue is full, QoS 1/2 messages wait in its session until it reconnects',
  disconnected: 'slow consumer: its outbound queue is full, clean-session client disconnected'
}

/**
 * Start a broker: validate the config, build persistence and aedes, load plugins
 * in order, then open the MQTT/TCP, MQTT/TLS and HTTP(+WebSocket) listeners.
 * Resolves once every listener is bound; throws a `ConfigError` or `PluginError`
 * (after releasing whatever it had opened) when it cannot start.
 */
export async function createBroker (input: BrokerInput = {}): Promise<Broker> {
  const { plugins: entries = [], logger, pluginTimeoutMs = DEFAULT_PLUGIN_TIMEOUT_MS, ...rest } = input
  const config = loadConfig(rest)
  const log = logger ?? createLogger(config.logLevel, config.nodeId)
  const [mqttTls, httpTls] = await Promise.all([readTls('mqtt.tls', config.mqtt.tls), readTls('http.tls', config.http.tls)])

  const connections = new Connections()
  const clientCounts = new Map<Transport, number>()
  const metrics = new CoreMetrics(connections, () => clientCounts)
  const chains = new HookChains()
  const backend = createBackend(config, log)
  const reportError = makeErrorReporter(log, metrics, backend.ready)
  const evicted = new Counter({ name: 'ce_broker_dead_letters_evicted_total', help: 'Dead letters evicted from the full store, oldest first', registers: [metrics.registry] })
  const webhookRegistry = new WebhookRegistry(config.webhooks.denyNetworks)
  // what GET /api/mqtt/messages/:topic reads: embedded, a ring the audit plugin fills; with Redis, the audit stream
  const auditTrail = backend.redis === undefined ? new MemoryAuditTrail(config.audit.recent.maxEntries, config.audit.recent.maxBytes) : new RedisAuditTrail(backend.redis, config.audit.stream.key)
  const onEvict = (count: number): void => { evicted.inc(count) }
  const deadLetters: DeadLetterStore = backend.redis === undefined
    ? new MemoryDeadLetterStore(config.deadLetters.maxEntries, onEvict)
    : new RedisDeadLetterStore(backend.redis, config.deadLetters.maxEntries, onEvict)

  /** The warn lines a client can trigger, sampled per client (`limits.clientLogIntervalMs`). */
  const clientLog = new LogSampler(config.limits.clientLogIntervalMs)
  const connect = adaptConnect({
    preConnect: chains.preConnect,
    authenticate: chains.authenticate,
    refused: chains.connectRefused,
    reportError: (err, context) => { reportError('connectRefused', err, context) },
    connections,
    log,
    available: backend.ready,
    sampler: clientLog
  })
  // aedes.publish needs the instance, which needs the gate: the gate reaches it through this late binding
  let publishPacket: (packet: PublishPacket) => Promise<void> = async () => { throw new Error('the broker has not started') }
  const gate = createPublishGate({
    chain: chains.authorizePublish,
    decided: chains.decided,
    reportError: (err, context) => { reportError('decided', err, context) },
    deadLetter: () => chains.deadLetter,
    publishRecord: (topic, record) => {
      publishPacket(toPacket({ topic, payload: record, qos: 1 })).catch((err: unknown) => { reportError('dead-letter', err, { topic }) })
    },
    connections,
    metrics,
    log,
    maxTopicBytes: config.limits.maxTopicBytes,
    maxTopicLevels: config.limits.maxTopicLevels,
    available: backend.ready,
    whenAvailable: backend.whenReady,
    holdMs: config.redis?.outageHoldMs ?? DEFAULT_OUTAGE_HOLD_MS,
    sampler: clientLog
  })
  const { limits } = config
  const forward = forwardCheck(connections, { chain: chains.forward, reportError: (err, context) => { reportError('forward', err, context) } })
  const authorizeSubscribe = adaptAuthorizeSubscribe(chains.authorizeSubscribe, connections, limits, metrics, log, clientLog)
  const aedes = new Aedes({
    id: config.nodeId,
    persistence: backend.persistence,
    mq: backend.mq,
    preConnect: connect.preConnect,
    authenticate: connect.authenticate,
    authorizePublish: gate.hook,
    authorizeSubscribe,
    // aedes' own ceiling (its matchers hold 100 levels at most), which would close the client
    // before authorizeSubscribe could answer SUBACK 0x80: limits.maxTopicLevels is checked by
    // the publish gate and the subscribe adapter instead
    maxTopicLevels: 100,
    keepaliveLimit: limits.maxKeepaliveSeconds,
    drainTimeout: limits.drainTimeoutMs,
    connectTimeout: limits.connectTimeoutMs,
    maxInflightInbound: limits.maxInflightInbound,
    authorizeForward: adaptAuthorizeForward(connections, metrics, forward),
    published: adaptPublished(chains.published, (err, context) => { reportError('published', err, context) })
  })
  // aedes drops a packet that a later-numbered one overtook (a QoS 0 one passing a QoS 1 one): see emit-order.ts
  keepEmitOrder(aedes, backend.mq)
  countClients(aedes, connections, clientCounts)
  // a SUBSCRIBE's filters are held now: the limit counts them from the client's subscriptions
  aedes.on('subscribe', function subscribed (_subs: unknown, client: Client) { authorizeSubscribe.settled?.(client) })
  /** Each connection's packet guard, told when its CONNECT is accepted: one listener for all connections. */
  const packetGuards = new WeakMap<Client, PacketGuard>()
  aedes.on('connackSent', function connectAccepted (packet, client) {
    // aedes emits it for refusals too (CONNACK 1–5), which are followed by a close
    if (packet.returnCode === 0) packetGuards.get(client)?.accepted()
  })
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
  EventEmitter.prototype.on.call(aedes, 'error', function aedesError (err: Error) { reportError('aedes', err) })

  publishPacket = async (packet) => {
    await new Promise<void>((resolve, reject) => {
      aedes.publish(packet, (err) => { if (err === undefined || err === null) resolve(); else reject(err) })
    })
  }
  const publishRaw = async (message: OutgoingMessage): Promise<void> => { await publishPacket(toPacket(message)) }
  /** The whole pipeline for a broker-side publish: check, then route what was accepted or diverted. */
  const submit = async (message: OutgoingMessage, options: SubmitOptions): Promise<BrokerError | undefined> => {
    const packet = toPacket(message)
    const refusal = await gate.check(packet, options)
    if (refusal === undefined || refusal.disposition !== 'reject') await publishPacket(packet)
    return refusal
  }

  const plugins = new PluginLoader((entry) => ({
    name: entry.name,
    log: log.child({ plugin: entry.name }),
    config,
    nodeId: config.nodeId,
    hooks: chains.registry,
    metrics: metrics.registry,
    publish: publishRaw,
    listening: backend.listening,
    submit,
    deadLetter: (message, error, options) => { gate.keep(toPacket(message), error, options) },
    countEvent: (outcome, reason) => { metrics.event(outcome, reason) },
    reportError: (err, context) => { reportError('plugin', err, { plugin: entry.name, ...context }) }
  }), pluginTimeoutMs, (err, context) => { reportError('plugin', err, context) })
  const listeners: Listener[] = []
  let http: HttpApi | undefined
  let websocket: { close: () => void } | undefined
  let stats: { stop: () => void } | undefined
  let outbound: OutboundQueues | undefined
  let closing: Promise<void> | undefined
  let listening = false

  async function close (): Promise<void> {
    closing ??= (async () => {
      listening = false
      stats?.stop()
      outbound?.close()
      backend.closing()
      websocket?.close()
      // stop accepting now; a server's close callback waits for its open sockets, which aedes closes next
      const listenersClosed = Promise.all(listeners.map(async (listener) => { await listener.close() }))
      // aedes.close ends with mq.close, which waits for Redis to confirm QUIT: bounded, so a
      // broker whose Redis is gone still shuts down (backend.close then drops the connections)
      const aedesClosed = new Promise<void>((resolve) => { aedes.close(() => { resolve() }) })
      if (!await settlesWithin(aedesClosed, AEDES_CLOSE_TIMEOUT_MS)) log.warn({ timeoutMs: AEDES_CLOSE_TIMEOUT_MS }, 'aedes did not close in time; closing connections anyway')
      connections.destroyAll()
      await listenersClosed
      await plugins.disposeAll()
      webhookRegistry.close()
      await http?.close()
      await backend.close()
      log.info('closed')
    })()
    await closing
  }

  try {
    await backend.started()
    await aedes.listen()
    if (backend.redis !== undefined) await webhookRegistry.share(backend.redis, (err) => { reportError('webhooks', err) })
    const builtins = await builtinPlugins(config, {
      deadLetters,
      redis: backend.redis,
      metrics: metrics.registry,
      log,
      webhooks: webhookRegistry,
      recentEvents: auditTrail instanceof MemoryAuditTrail ? auditTrail : undefined,
      reportError: (err) => { reportError('catalog', err) }
    })
    await plugins.load([...builtins.entries, ...entries])

    const admission = new Admission(limits)
    /** A slow consumer is logged once per client per minute, never per message (issue: one client's misery is not the log's). */
    const slowLog = new LogSampler(SLOW_CONSUMER_LOG_MS)
    const slowConsumer = (overflow: Overflow): void => {
      metrics.limitHit(overflow.limit)
      if (overflow.action === 'dropped' || overflow.action === 'disconnected') metrics.dropped('slow_consumer')
      const clientId = overflow.client.id
      const suppressed = slowLog.take(clientId)
      if (suppressed === undefined) return
      log.warn({ clientId, action: overflow.action, limit: overflow.limit, queued: overflow.queued, queuedBytes: overflow.queuedBytes, suppressed }, SLOW_CONSUMER_LINES[overflow.action])
    }
    const queues = new OutboundQueues(limits, slowConsumer, { check: forward, persistence: backend.persistence, reportError: (err, context) => { reportError('outbound', err, context) } })
    outbound = queues
    /** A refusal of a connection's bytes, sampled per address (the client may have no id yet), as the connect refusals are. */
    const warnSampled = (fields: Readonly<Record<string, unknown>> & { readonly remoteAddress: string | undefined }, msg: string): void => {
      const suppressed = clientLog.take(`address ${fields.remoteAddress ?? ''}`)
      if (suppressed !== undefined) log.warn(suppressed === 0 ? fields : { ...fields, suppressed }, msg)
    }
    const handle = (stream: Duplex, socket: Socket, transport: Transport, remoteAddress: string | undefined, req?: IncomingMessage): void => {
      const refused = admission.admit(socket, remoteAddress)
      if (refused !== undefined) {
        // closed before a byte is read: a flood costs no parser and no client. Logged at debug, counted always
        metrics.limitHit(refused)
        log.debug({ transport, remoteAddress, limit: refused }, 'connection refused: over a limit')
        socket.destroy()
        return
      }
      connections.track(socket, transport)
      let client: Client | undefined
      // installed before aedes reads a byte: a packet over a limit is refused from its header
      const guard = guardPacketSize(stream, {
        maxPayloadBytes: limits.maxPayloadBytes,
        maxPacketBytes: limits.maxPacketBytes,
        maxConnectPacketBytes: limits.maxConnectPacketBytes,
        maxFiltersPerPacket: limits.maxFiltersPerPacket,
        onOversize: function refuseOversize (info) {
          gate.tooLarge(info.topic ?? '', info.payloadBytes, info.limit, { origin: transport, clientId: client?.id ?? null })
          warnSampled({ clientId: client?.id, transport, remoteAddress, reason: 'payload_too_large', ...info }, 'publish over limits.maxPayloadBytes refused, client disconnected')
        },
        // the guard refuses once per connection; a flood of connections is sampled per address
        onRefused: function refusePacket (refusal) {
          metrics.limitHit(refusal.limit)
          warnSampled({ clientId: client?.id, transport, remoteAddress, ...refusal }, 'packet over a limit refused, connection closed')
        }
      })
      client = aedes.handle(stream, req)
      packetGuards.set(client, guard)
      queues.attach(client)
      connections.attach(client, { transport, remoteAddress })
    }
    listeners.push(await listenMqtt({
      host: config.mqtt.host,
      port: config.mqtt.port,
      log,
      onConnection: config.mqtt.proxyProtocol
        ? (socket) => {
            // the load balancer names the client first; a socket that does not is closed
            readProxyHeader(socket, limits.connectTimeoutMs).then((address) => { handle(socket, socket, 'tcp', address ?? socket.remoteAddress) }, (err: unknown) => {
              metrics.limitHit('proxy_header')
              log.debug({ remoteAddress: socket.remoteAddress, err: messageOf(err) }, 'connection refused: no valid PROXY header')
              socket.destroy()
            })
          }
        : (socket) => { handle(socket, socket, 'tcp', socket.remoteAddress) }
    }))
    if (mqttTls !== undefined && config.mqtt.tls !== undefined) {
      listeners.push(await listenMqtt({
        host: config.mqtt.host,
        port: config.mqtt.tls.port,
        tls: mqttTls,
        log,
        onConnection: (socket) => { handle(socket, socket, 'tls', socket.remoteAddress) }
      }))
    }

    const startedAt = new Date()
    http = await createHttpApi({
      log: log.child({ component: 'http' }),
      metrics: metrics.registry,
      nodeId: config.nodeId,
      version: packageVersion(),
      startedAt,
      persistence: backend.kind,
      connectedClients: () => [...clientCounts.values()].reduce((a, b) => a + b, 0),
      readiness: () => readiness(listening, backend),
      retained: backend.retained,
      auditTrail,
      deadLetters,
      submit,
      keep: (message, error, options) => { gate.keep(toPacket(message), error, options) },
      tooLarge: (topic, payloadBytes) => { gate.tooLarge(topic, payloadBytes, config.limits.maxPayloadBytes, { origin: 'http' }) },
      maxPayloadBytes: config.limits.maxPayloadBytes,
      httpBodyBytes: config.limits.httpBodyBytes,
      cloudEventTopic: cloudEventTopics(config.validation.rules),
      schemas: builtins.schemas,
      catalog: async () => await buildCatalog({
        node: config.nodeId,
        schemas: builtins.catalogSchemas,
        publishers: async () => await builtins.publishers.list(),
        webhooks: () => webhookRegistry.store.list().map((s) => ({ id: s.id, service_id: s.service_id, webhook_url: s.webhook_url, filters: s.filters })),
        mqtt: async (topic) => await mqttSubscribers(aedes, backend, topic)
      }),
      dashboardDir: dashboardDir(),
      webhooks: webhookRegistry,
      redeliver: (subscription, message, deadLetterId) => webhookRegistry.redeliver(subscription, { topic: message.topic, payload: message.payload }, deadLetterId)
    }, { bodyLimit: limits.httpBodyBytes, apiKeys: config.auth.apiKeys, publicMetrics: config.http.publicMetrics, ...(config.http.trustProxy === undefined ? {} : { trustProxy: config.http.trustProxy }), ...(httpTls === undefined ? {} : { tls: httpTls }) })
    const wsTransport: Transport = httpTls === undefined ? 'ws' : 'wss'
    const trustProxy = config.http.trustProxy === undefined ? undefined : proxyaddr.compile(config.http.trustProxy.split(/ *, */))
    websocket = attachWebSocket(http.server, {
      log,
      // a WebSocket message is read whole before MQTT sees it: bound it by the largest PUBLISH allowed
      maxPayload: config.limits.maxPayloadBytes + WS_FRAME_HEADROOM,
      // behind a trusted proxy the client is the one X-Forwarded-For names
      onConnection: (stream, socket, req) => { handle(stream, socket, wsTransport, trustProxy === undefined ? socket.remoteAddress : proxyaddr(req, trustProxy), req) },
      onOversize: () => { metrics.limitHit('ws_message') }
    })
    const httpPort = await listenHttp(http, config.http.host, config.http.port)
    listening = true
    stats = publishStats({
      nodeId: config.nodeId,
      collect: () => ({
        clients: [...clientCounts.values()].reduce((a, b) => a + b, 0),
        events: metrics.eventTotals(),
        webhooks: webhookRegistry.list()
      }),
      publish: async (topic, payload) => { await publishRaw({ topic, payload }) },
      log
    })

    const ports: BoundPorts = {
      mqtt: listeners[0]?.port ?? config.mqtt.port,
      http: httpPort,
      ...(listeners[1] === undefined ? {} : { mqttTls: listeners[1].port })
    }
    log.info({ mqttPort: ports.mqtt, httpPort: ports.http, ...(ports.mqttTls === undefined ? {} : { mqttTlsPort: ports.mqttTls }), persistence: backend.kind }, 'ready')

    return {
      config,
      nodeId: config.nodeId,
      ports,
      log,
      metrics: metrics.registry,
      aedes,
      publish: async (input) => {
        const message: OutgoingMessage = isOutgoingMessage(input)
          ? input
          : { topic: typeToTopic(input.type), payload: JSON.stringify(input), qos: 1 }
        const refusal = await submit(message, { origin: 'internal' })
        // a duplicate was accepted before: like MQTT's ack and HTTP's 200, not a failure
        if (refusal !== undefined && !(refusal instanceof DuplicateEventError)) throw refusal
      },
      close
    }
  } catch (err: unknown) {
    await close().catch((closeErr: unknown) => { log.error({ err: closeErr }, 'cleanup after a failed start failed') })
    throw err
  }
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

function readiness (listening: boolean, backend: Backend): Record<string, boolean> {
  const checks: Record<string, boolean> = { listeners: listening }
  if (backend.kind === 'redis') checks.redis = backend.ready()
  return checks
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
function makeErrorReporter (log: Logger, metrics: CoreMetrics, backendReady: () => boolean) {
  return function reportError (component: string, err: unknown, context: Readonly<Record<string, unknown>> = {}): void {
    metrics.error(component)
    if (backendReady()) log.error({ err: toBrokerError(err), component, ...context }, `${component} error`)
    else log.debug({ err: toBrokerError(err), component, ...context }, `${component} error while redis is unreachable`)
  }
}

function isOutgoingMessage (input: OutgoingMessage | CloudEvent): input is OutgoingMessage {
  return !('specversion' in input)
}

function toPacket (message: OutgoingMessage): PublishPacket {
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
