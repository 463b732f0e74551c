import type { Redis } from 'ioredis'
import { definePlugin, loadedWith, packageVersion, type PluginContext, type PublishAttempt, type PublishVerdict } from '../../src/core/index.js'
import { authSection } from '../auth/config.js'
import { SCHEMAS } from '../schema-validation/index.js'
import { WEBHOOKS } from '../webhooks/index.js'
import { buildAsyncApi } from './asyncapi.js'
import { describeListeners, type ClientAuth } from './asyncapi-servers.js'
import { buildCatalog } from './catalog.js'
import { catalogRoutes } from './routes.js'

export { buildAsyncApi, type AsyncApiDocument, type AsyncApiInput } from './asyncapi.js'
export { buildCatalog, catalogMarkdown, type Catalog, type CatalogEntry, type CatalogSchema, type CatalogWebhook, type CatalogMqttSubscription } from './catalog.js'

/** Who published a type, and when last. */
export interface PublisherSeen {
  readonly type: string
  /** The MQTT client id; `http` for the HTTP API, `internal` for the broker's own publishes. */
  readonly publisher: string
  /** RFC 3339 */
  readonly lastSeen: string
}

/** Remembers which publishers sent which accepted event types (the catalog's "publishers seen"). */
export interface PublisherLog {
  seen: (type: string, publisher: string, at: number) => void
  list: () => Promise<PublisherSeen[]>
}

/** Pairs (type, publisher) remembered, the least recently seen forgotten first. */
const MAX_PAIRS = 10_000
/** How often one node writes the same pair's time to Redis. */
const REDIS_REFRESH_MS = 60_000

/**
 * Times by type and publisher, at most `max` pairs. On the publish path: a known pair
 * costs two Map lookups and a number stored, no allocation. A new pair over the bound
 * evicts the least recently seen one, found by a scan (rare: publishers are services
 * with stable client ids).
 */
class SeenPairs {
  readonly #byType = new Map<string, Map<string, number>>()
  #size = 0

  constructor (private readonly max: number) {}

  get (type: string, publisher: string): number | undefined {
    return this.#byType.get(type)?.get(publisher)
  }

  set (type: string, publisher: string, at: number): void {
    let publishers = this.#byType.get(type)
    if (publishers === undefined) this.#byType.set(type, publishers = new Map())
    if (!publishers.has(publisher)) {
      if (this.#size >= this.max) this.#evictOldest()
      this.#size++
    }
    publishers.set(publisher, at)
  }

  entries (): Array<{ type: string, publisher: string, at: number }> {
    const out: Array<{ type: string, publisher: string, at: number }> = []
    for (const [type, publishers] of this.#byType) for (const [publisher, at] of publishers) out.push({ type, publisher, at })
    return out
  }

  #evictOldest (): void {
    let oldest: { type: string, publisher: string, at: number } | undefined
    for (const entry of this.entries()) if (oldest === undefined || entry.at < oldest.at) oldest = entry
    if (oldest === undefined) return
    const publishers = this.#byType.get(oldest.type)
    publishers?.delete(oldest.publisher)
    if (publishers?.size === 0) this.#byType.delete(oldest.type)
    this.#size--
  }
}

/** In this process: the last `MAX_PAIRS` pairs seen. */
export class MemoryPublisherLog implements PublisherLog {
  readonly #pairs = new SeenPairs(MAX_PAIRS)

  seen (type: string, publisher: string, at: number): void {
    this.#pairs.set(type, publisher, at)
  }

  async list (): Promise<PublisherSeen[]> {
    return this.#pairs.entries().map(({ type, publisher, at }) => ({ type, publisher, lastSeen: new Date(at).toISOString() }))
  }
}

/**
 * In Redis, for every node: a sorted set of pairs scored by when they were last seen,
 * trimmed to the newest `MAX_PAIRS`. A node writes a pair when it is new to it and then
 * at most once a minute, so a steady publisher costs Redis nothing per event.
 */
export class RedisPublisherLog implements PublisherLog {
  /** When this node last wrote each pair */
  readonly #written = new SeenPairs(MAX_PAIRS)

  constructor (
    private readonly redis: Redis,
    private readonly onError: (err: unknown) => void,
    private readonly key = 'ce-broker:catalog:publishers'
  ) {}

  seen (type: string, publisher: string, at: number): void {
    const written = this.#written.get(type, publisher)
    if (written !== undefined && at - written < REDIS_REFRESH_MS) return
    this.#written.set(type, publisher, at)
    this.redis.multi()
      .zadd(this.key, at, pairKey(type, publisher))
      .zremrangebyrank(this.key, 0, -MAX_PAIRS - 1)
      .exec()
      .catch(this.onError)
  }

  async list (): Promise<PublisherSeen[]> {
    const flat = await this.redis.zrange(this.key, 0, -1, 'WITHSCORES')
    const seen: PublisherSeen[] = []
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const pair = splitPair(flat[i] ?? '')
      if (pair !== undefined) seen.push({ ...pair, lastSeen: new Date(Number(flat[i + 1])).toISOString() })
    }
    return seen
  }
}

/** Type and publisher in one string; NUL appears in neither (MQTT forbids it in topics, and types map to topics). */
function pairKey (type: string, publisher: string): string {
  return `${type}\u0000${publisher}`
}

function splitPair (key: string): { type: string, publisher: string } | undefined {
  const cut = key.indexOf('\u0000')
  return cut === -1 ? undefined : { type: key.slice(0, cut), publisher: key.slice(cut + 1) }
}

/**
 * `GET /api/catalog`: every event type with its schema's fields (from schema-validation),
 * the publishers seen, and its subscribers (webhook subscriptions, when the webhooks run,
 * and MQTT subscriptions). Notes the publisher of every accepted CloudEvent, by its
 * `type`: two Map lookups per accepted event. With Redis the publishers seen are shared.
 */
export const catalog = definePlugin({ name: 'catalog', dependsOn: ['schema-validation'], setup: setupCatalog })

async function setupCatalog (ctx: PluginContext): Promise<undefined> {
  const schemas = ctx.need(SCHEMAS)
  const webhooks = ctx.find(WEBHOOKS)
  const publishers: PublisherLog = ctx.redis === undefined ? new MemoryPublisherLog() : new RedisPublisherLog(ctx.redis, (err) => { ctx.reportError(err, { op: 'publisher log' }) })
  ctx.hooks.decided(function notePublisher (attempt: PublishAttempt, verdict: PublishVerdict): void {
    if (verdict !== undefined || attempt.event?.type === undefined) return
    publishers.seen(attempt.event.type, attempt.clientId ?? attempt.origin, Date.now())
  })
  const build = async (): ReturnType<typeof buildCatalog> => await buildCatalog({
    node: ctx.nodeId,
    schemas: schemas.summaries,
    publishers: async () => await publishers.list(),
    webhooks: () => webhooks?.store.list().map((s) => ({ id: s.id, service_id: s.service_id, webhook_url: s.webhook_url, filters: s.mqttFilters, mode: s.mode })) ?? [],
    mqtt: ctx.subscribers
  })
  const auth = clientAuth(ctx)
  const version = packageVersion()
  ctx.routes(async function routes (app) {
    await app.register(catalogRoutes, {
      catalog: build,
      asyncapi: async (origin) => buildAsyncApi({
        catalog: await build(),
        schemas: schemas.list(),
        definitions: schemas.definitions(),
        listeners: describeListeners(ctx.config, ctx.ports(), origin, auth),
        version
      })
    })
  })
  return undefined
}

/** Whether MQTT clients send credentials, as the auth section says (none loaded: anonymous, as without the auth plugin). */
function clientAuth (ctx: PluginContext): ClientAuth {
  if (!loadedWith(ctx.config, [authSection])) return { credentials: false, anonymous: true }
  const { users, jwt, allowAnonymous } = ctx.config.auth
  const credentials = users.length > 0 || jwt !== undefined
  return { credentials, anonymous: !credentials || allowAnonymous }
}
