import { createRequire } from 'node:module'
import type { Readable } from 'node:stream'
import type { AedesMemoryPersistence, Packet } from 'aedes-persistence'
import redisPersistence from 'aedes-persistence-redis'
import { Redis, type RedisOptions } from 'ioredis'
import mqemitter, { type MQEmitter } from 'mqemitter'
import { createClusterEmitter, type ClusterEmitter, type SharedLink } from '../cluster/emitter.js'
import type { Journal } from '../cluster/journal.js'
import { ROUTE_CHANNEL } from '../cluster/scripts.js'
import type { CoreConfig } from '../config/index.js'
import { ConfigError } from '../errors.js'
import type { Logger } from '../logger.js'
import { boundRecursion } from './bounded-mq.js'
import { guardDollarTopics } from './dollar-topics.js'
import { redisTarget, type RedisTarget } from './redis-url.js'
import { pageRedisBacklog } from './redis-backlog.js'
import { watchSystemTopics, type SystemInterest } from './system-interest.js'

// aedes-persistence's types declare an ESM default export, but the package is
// CommonJS and module.exports is the factory itself (aedes loads it the same way).
const memoryPersistence: () => AedesMemoryPersistence = createRequire(import.meta.url)('aedes-persistence')

/** A retained message as read back from the persistence. */
export interface RetainedMessage {
  readonly topic: string
  readonly payload: Buffer
  readonly qos: 0 | 1 | 2
}

/**
 * Where aedes keeps state (sessions, subscriptions, retained, QoS 1/2 queues, wills)
 * and how messages travel between nodes. Memory when embedded; Redis with `redis.url`.
 */
export interface Backend {
  readonly kind: 'memory' | 'redis'
  /** Handed to aedes as `persistence`. */
  readonly persistence: AedesMemoryPersistence
  /** Handed to aedes as `mq`. */
  readonly mq: MQEmitter
  /**
   * Whether a subscription may receive messages under a `$` top level (`'$audit'`):
   * this node's subscriptions, and with Redis the cluster's route table.
   */
  readonly listening: SystemInterest
  /** A Redis connection for plain commands (idempotency keys, the audit stream); shared with the persistence. */
  readonly redis: Redis | undefined
  /** With Redis, how shared subscription groups span the nodes. */
  readonly shared: SharedLink | undefined
  /** With Redis, this node's journal: an event is committed there, with its claim, before it is acknowledged. */
  readonly journal: Journal | undefined
  /** Whether the backend can serve: always for memory, Redis connections up for Redis. */
  readonly ready: () => boolean
  /**
   * Resolves true as soon as the backend can serve, false when `timeoutMs` passes first.
   * At once for memory; with Redis, when every connection is up again.
   */
  readonly whenReady: (timeoutMs: number) => Promise<boolean>
  /** Retained messages whose topic matches `filter`, at most `limit`. */
  readonly retained: (filter: string, limit: number) => Promise<RetainedMessage[]>
  /** Stored QoS 1/2 subscriptions matching `topic`, of every session (with Redis, every node's). */
  readonly subscribers: (topic: string) => Promise<StoredSubscription[]>
  /**
   * Resolves once the backend can serve for the first time; start-up waits for it. While
   * Redis cannot be reached it goes on waiting (a node may start before its Redis); it
   * rejects with a `ConfigError` when Redis refuses the URL's credentials.
   */
  readonly started: () => Promise<void>
  /** The broker is shutting down: connections closing from now on are not an outage. */
  readonly closing: () => void
  /** Release connections; call after aedes has closed (aedes closes `mq` itself). */
  readonly close: () => Promise<void>
}

/** `redis.maxRouteBacklog` when not set. */
const DEFAULT_MAX_ROUTE_BACKLOG = 10_000
/** `redis.nodeTimeoutMs` when not set. */
const DEFAULT_NODE_TIMEOUT_MS = 10_000
/** `redis.outageHoldMs` when not set: how long a publish waits for an unreachable Redis. */
export const DEFAULT_OUTAGE_HOLD_MS = 10_000

/** What the backend has counted. */
export interface BackendCounters {
  /** A bound of the backend was reached (`route_backlog`). */
  readonly limitHit: (limit: string) => void
  /** An event was published again from a journal. */
  readonly journalReplayed: () => void
}

const UNCOUNTED: BackendCounters = { limitHit: () => {}, journalReplayed: () => {} }

/** Build the backend the config asks for. */
export function createBackend (config: CoreConfig, log: Logger, counters: BackendCounters = UNCOUNTED): Backend {
  return config.redis === undefined ? memoryBackend() : redisBackend(config, config.redis, log, counters)
}

// [MQTT-4.7.1-3]: `sport/#` matches `sport`; aedes sets this for its default mqemitter too
const MQ_OPTIONS = { concurrency: 100, matchEmptyLevels: true }

/** One node on its own: aedes' memory persistence and a local emitter. */
function memoryBackend (): Backend {
  const persistence = memoryPersistence()
  guardDollarTopics(persistence)
  const mq = boundRecursion(mqemitter(MQ_OPTIONS))
  return {
    kind: 'memory',
    persistence,
    mq,
    listening: watchSystemTopics(mq),
    redis: undefined,
    shared: undefined,
    journal: undefined,
    ready: () => true,
    whenReady: async () => true,
    started: async () => {},
    closing: () => {},
    retained: (filter, limit) => readRetained(persistence, filter, limit),
    subscribers: async (topic) => await storedSubscribers(persistence, topic),
    close: async () => { await persistence.destroy() }
  }
}

/** A node of a cluster: persistence in Redis and routing between nodes (cluster/emitter.ts). */
function redisBackend (config: CoreConfig, redis: NonNullable<CoreConfig['redis']>, log: Logger, counters: BackendCounters): Backend {
  const target = targetOf(redis.url)
  const health = new RedisHealth(log.child({ component: 'redis' }))
  // One connection for the persistence; for the cluster one for commands, one subscribed to
  // the route channel and one for the blocking inbox read (those two can do nothing else).
  // The URL carries the password, the db (`/2`) and TLS (`rediss://`), or the Sentinels to ask (redis-url.ts).
  // Cluster commands wait through reconnects rather than fail: a route write is kept until Redis is back.
  // Each connection is named `ce-broker:<nodeId>:<role>` in Redis' CLIENT LIST.
  const open = (role: string, options: RedisOptions = {}): Redis => {
    const named = { connectionName: `ce-broker:${config.nodeId}:${role}`, ...options }
    return target.kind === 'url' ? new Redis(target.url, named) : new Redis({ ...target.options, ...named })
  }
  const db = health.watch(open('persistence'), 'persistence')
  const commands = health.watch(open('cluster', { enableAutoPipelining: true, maxRetriesPerRequest: null }), 'cluster')
  const subscriber = health.watch(open('subscribe'), 'subscribe', true)
  const reader = health.watch(open('inbox', { maxRetriesPerRequest: null }), 'inbox')
  // the journal's commits on a connection of their own: a WAIT for replicas holds only them, never a heartbeat
  const journal = health.watch(open('journal', { maxRetriesPerRequest: null }), 'journal')
  const connections = [db, commands, subscriber, reader, journal]
  subscriber.subscribe(ROUTE_CHANNEL).catch(() => { /* ioredis subscribes again on reconnect */ })
  const persistence = redisPersistence({ conn: db })
  guardDollarTopics(persistence)
  // the library sends at most 1 001 queued messages per CONNECT: send the whole queue, a page at a time
  pageRedisBacklog(persistence, db)
  const local = boundRecursion(mqemitter(MQ_OPTIONS))
  const localInterest = watchSystemTopics(local)
  const cluster: ClusterEmitter = createClusterEmitter(local, { commands, subscriber, reader, journal }, {
    nodeId: config.nodeId,
    maxBacklog: redis.maxRouteBacklog ?? DEFAULT_MAX_ROUTE_BACKLOG,
    nodeTimeoutMs: redis.nodeTimeoutMs ?? DEFAULT_NODE_TIMEOUT_MS,
    onBehind: () => { counters.limitHit('route_backlog') },
    onReplayed: counters.journalReplayed,
    waitReplicas: redis.waitReplicas ?? 0,
    holdMs: redis.outageHoldMs ?? DEFAULT_OUTAGE_HOLD_MS
  }, log.child({ component: 'cluster' }))
  return {
    kind: 'redis',
    persistence,
    mq: cluster.mq,
    listening: (level) => localInterest(level) || cluster.remoteListens(level),
    redis: db,
    shared: cluster.shared,
    journal: cluster.journal,
    ready: () => health.ready(),
    whenReady: async (timeoutMs) => await health.whenReady(timeoutMs),
    started: async () => {
      await health.started()
      await cluster.start()
    },
    closing: () => { health.stop() },
    retained: (filter, limit) => readRetained(persistence, filter, limit),
    subscribers: async (topic) => await storedSubscribers(persistence, topic),
    close: async () => {
      await cluster.stop()
      // destroy() unsubscribes through Redis; skip it when Redis is gone, it would wait for a reconnect
      if (db.status === 'ready') await persistence.destroy()
      for (const conn of connections) conn.disconnect()
    }
  }
}

/** What Redis answers to a wrong user name or password (`AUTH`, or a command without it). */
const CREDENTIALS_REFUSED = /^(WRONGPASS|NOAUTH|ERR invalid password|ERR AUTH)/

/**
 * Whether every Redis connection of this node is up. Each connection reconnects by
 * itself (ioredis retries forever, resubscribes and resends what was sent but not
 * answered); this tells the node's readiness and logs each transition of the whole
 * once: `redis unreachable` when the first connection drops, `redis reachable again`
 * when the last one is back, never once per retry.
 */
class RedisHealth {
  readonly #down = new Set<string>()
  readonly #waiters = new Set<() => void>()
  #connectedOnce = false
  #toldNotYet = false
  #stopped = false
  /** Redis refused the credentials before the first connection: start-up fails with it. */
  #refused: Error | undefined
  #downSince = 0

  constructor (private readonly log: Logger) {}

  /**
   * @param subscriber ioredis says 'ready' just before it subscribes again to what the
   *   connection followed: it counts as up once a PING sent after those subscriptions
   *   is answered, so nothing published the moment readiness turns green is missed.
   */
  watch (conn: Redis, role: string, subscriber = false): Redis {
    if (conn.status !== 'ready') this.#down.add(role)
    conn.on('ready', () => {
      if (!subscriber) {
        this.#up(role)
        return
      }
      setImmediate(() => { conn.ping().then(() => { this.#up(role) }, () => { /* lost again: its error event tells */ }) })
    })
    conn.on('error', (err: Error) => { this.#lost(role, err) })
    conn.on('close', () => { this.#lost(role, undefined) })
    return conn
  }

  ready (): boolean {
    return this.#down.size === 0
  }

  async started (): Promise<void> {
    while (!this.ready()) {
      if (this.#refused !== undefined) {
        throw new ConfigError('config', 'redis.url', `is refused by Redis: ${this.#refused.message}`, { cause: this.#refused })
      }
      await this.whenReady(100)
    }
  }

  async whenReady (timeoutMs: number): Promise<boolean> {
    if (this.ready()) return true
    return await new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer)
        this.#waiters.delete(wake)
        resolve(this.ready())
      }
      const timer = setTimeout(wake, timeoutMs).unref()
      this.#waiters.add(wake)
    })
  }

  #up (role: string): void {
    if (!this.#down.delete(role) || this.#down.size > 0) return
    if (this.#connectedOnce) this.log.info({ downMs: Date.now() - this.#downSince }, 'redis reachable again')
    else this.log.info('redis connected')
    this.#connectedOnce = true
    for (const wake of [...this.#waiters]) wake()
  }

  /** No more transitions: the connections are being closed on purpose. */
  stop (): void {
    this.#stopped = true
  }

  #lost (role: string, err: Error | undefined): void {
    if (this.#stopped) return
    const wasReady = this.ready()
    this.#down.add(role)
    if (!wasReady) {
      if (!this.#connectedOnce && err !== undefined && CREDENTIALS_REFUSED.test(err.message)) this.#refused = err
      if (!this.#connectedOnce && !this.#toldNotYet && err !== undefined) {
        this.#toldNotYet = true
        this.log.warn({ role, err: err.message }, 'redis not reachable yet: retrying')
      } else if (err !== undefined) this.log.debug({ role, err: err.message }, 'redis connection error')
      return
    }
    this.#downSince = Date.now()
    this.log.warn({ role, ...(err === undefined ? {} : { err: err.message }) }, 'redis unreachable: QoS 1/2 publishes wait, new connections are refused until it is back')
  }
}

async function readRetained (persistence: AedesMemoryPersistence, filter: string, limit: number): Promise<RetainedMessage[]> {
  const out: RetainedMessage[] = []
  const stream: Readable = persistence.createRetainedStreamCombi([filter])
  for await (const chunk of stream) {
    const packet: Packet = chunk
    if (packet.cmd !== 'publish') continue
    out.push({ topic: packet.topic, payload: Buffer.from(packet.payload), qos: packet.qos })
    if (out.length >= limit) {
      stream.destroy()
      break
    }
  }
  return out
}

/** A subscription as the persistence stores it. */
export interface StoredSubscription {
  readonly clientId: string
  readonly topic: string
  readonly qos: number
}

/**
 * `subscriptionsByTopic`, which both persistences answer with a promise (as aedes calls
 * it); aedes-persistence's types still describe the callback form, hence the checks.
 */
async function storedSubscribers (persistence: AedesMemoryPersistence, topic: string): Promise<StoredSubscription[]> {
  const lookup: unknown = Reflect.get(persistence, 'subscriptionsByTopic')
  if (typeof lookup !== 'function') return []
  const found: unknown = await Reflect.apply(lookup, persistence, [topic])
  if (!Array.isArray(found)) return []
  return found.flatMap((sub: unknown): StoredSubscription[] => {
    if (typeof sub !== 'object' || sub === null) return []
    const { clientId, topic: filter, qos } = sub as Record<string, unknown>
    return typeof clientId === 'string' && typeof filter === 'string' ? [{ clientId, topic: filter, qos: typeof qos === 'number' ? qos : 0 }] : []
  })
}

/** `redis.url` read, or a `ConfigError` naming it. */
function targetOf (url: string): RedisTarget {
  try {
    return redisTarget(url)
  } catch (err: unknown) {
    throw new ConfigError('config', 'redis.url', `${err instanceof Error ? err.message : String(err)}, got ${JSON.stringify(url)}`, { cause: err })
  }
}
