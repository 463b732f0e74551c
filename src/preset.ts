import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { Counter, type Registry } from 'prom-client'
import type { Redis } from 'ioredis'
import { audit, type AuditOptions, type MemoryAuditTrail } from '../plugins/audit/index.js'
import { auth, checkAclRules } from '../plugins/auth/index.js'
import { deadLetter } from '../plugins/dead-letter/index.js'
import { MemoryIdempotencyStore, RedisIdempotencyStore, idempotency } from '../plugins/idempotency/index.js'
import { SchemaRegistry, schemaValidation } from '../plugins/schema-validation/index.js'
import { summarizeSchema } from '../plugins/schema-validation/summary.js'
import { MemoryPublisherLog, RedisPublisherLog, catalog, type PublisherLog } from '../plugins/catalog/index.js'
import type { CatalogSchema } from './core/catalog.js'
import { webhooks, type WebhookRegistry } from '../plugins/webhooks/index.js'
import type { BrokerConfig } from './config.js'
import type { PluginEntry } from './core/context.js'
import type { Logger } from './core/logger.js'
import type { DeadLetterStore } from './core/persistence/dead-letters.js'
import type { SchemaListing } from './core/http/routes/schemas.js'
import { bundledSchemasDir } from './core/version.js'

/** The plugins every broker runs before the caller's, configured from the config. */
export interface Builtins {
  readonly entries: readonly PluginEntry[]
  /** The registry's schemas, for `GET /api/schemas`. */
  readonly schemas: () => readonly SchemaListing[]
  /** The same with their fields summarized, for `GET /api/catalog`. */
  readonly catalogSchemas: () => readonly CatalogSchema[]
  /** Who published which event types. */
  readonly publishers: PublisherLog
}

const DEFAULT_SCHEMAS_DIR = './schemas'

/** What the built-in plugins are built from besides the config. */
export interface BuiltinDeps {
  readonly deadLetters: DeadLetterStore
  /** Present in Redis mode: idempotency keys and the audit stream live there. */
  readonly redis: Redis | undefined
  readonly metrics: Registry
  readonly log: Logger
  /** Webhook subscriptions, shared with the HTTP API. */
  readonly webhooks: WebhookRegistry
  /** Where a failed write of the publisher log is reported. */
  readonly reportError: (err: unknown) => void
  /** Embedded mode: the ring the audit keeps accepted events in, for `GET /api/mqtt/messages/:topic`. */
  readonly recentEvents: MemoryAuditTrail | undefined
}

/**
 * In order: dead-letter; auth when users, JWTs or ACL rules are configured (a publish
 * no ACL grants is refused before anything reads it; an ACL alone applies to anonymous
 * clients, role `anonymous`, and a rule that can never apply stops start-up); schema-validation when any validation applies (rules, or
 * `validation.default: reject`); idempotency after it (it keys on the events
 * validation reads); audit, which sees every verdict; webhooks, which deliver
 * what was published; catalog, which notes who published each type. The schema folder is
 * read here, at start-up; the default `./schemas` falls back to the schemas
 * bundled with the package when the working folder has none, so `createBroker()`
 * works from anywhere.
 */
export async function builtinPlugins (config: BrokerConfig, deps: BuiltinDeps): Promise<Builtins> {
  const { log } = deps
  const entries: PluginEntry[] = [deadLetter({ store: deps.deadLetters })]
  // authentication once anybody must prove who they are, ACLs once any rule is set; first in the publish chain
  const { auth: authConfig } = config
  if (authConfig.users.length > 0 || authConfig.jwt !== undefined || authConfig.acl.length > 0) {
    // here, not in the plugin's setup: a rule that can never apply is a ConfigError, not a plugin failure
    checkAclRules(authConfig, 'config')
    entries.push(auth({
      users: authConfig.users,
      acl: authConfig.acl,
      allowAnonymous: authConfig.allowAnonymous,
      loginFailures: authConfig.loginFailures,
      ...(deps.redis === undefined ? {} : { redis: deps.redis }),
      ...(authConfig.jwt === undefined ? {} : { jwt: authConfig.jwt })
    }))
  }
  const validating = config.validation.rules.length > 0 || config.validation.default === 'reject'
  if (!validating) {
    if (config.audit.enabled) entries.push(audit(auditOptions(config, deps.redis, deps.recentEvents)))
    entries.push(webhooksEntry(config, deps))
    // no rule reads events here: no type is ever seen
    return { entries, schemas: () => [], catalogSchemas: () => [], publishers: new MemoryPublisherLog() }
  }

  let dir = resolve(config.schemas.dir)
  if (config.schemas.dir === DEFAULT_SCHEMAS_DIR && !existsSync(dir)) {
    const bundled = bundledSchemasDir()
    if (bundled !== undefined) {
      log.info({ dir: bundled }, 'no ./schemas here: using the bundled albergue schemas')
      dir = bundled
    }
  }
  const registry = await SchemaRegistry.load(dir)
  entries.push(schemaValidation({ rules: config.validation.rules, default: config.validation.default, workers: config.validation.workers, registry }))
  if (config.idempotency.enabled) {
    const evicted = new Counter({ name: 'ce_broker_idempotency_evicted_total', help: 'Events the full memory idempotency store forgot before their window ended', registers: [deps.metrics] })
    const store = deps.redis === undefined
      ? new MemoryIdempotencyStore(config.idempotency.maxEntries, () => { evicted.inc() })
      : new RedisIdempotencyStore(deps.redis)
    entries.push(idempotency({ store, windowMs: config.idempotency.windowMs }))
  }
  if (config.audit.enabled) entries.push(audit(auditOptions(config, deps.redis, deps.recentEvents)))
  entries.push(webhooksEntry(config, deps))
  const publishers = deps.redis === undefined ? new MemoryPublisherLog() : new RedisPublisherLog(deps.redis, deps.reportError)
  entries.push(catalog({ log: publishers }))
  const catalogSchemas: CatalogSchema[] = registry.list().map((entry) => ({
    type: entry.type,
    file: entry.file,
    draft: entry.draft,
    ...(entry.id === undefined ? {} : { id: entry.id }),
    ...(typeof entry.schema.title === 'string' ? { title: entry.schema.title } : {}),
    fields: summarizeSchema(entry.schema, registry.documents())
  }))
  return { entries, schemas: () => registry.list(), catalogSchemas: () => catalogSchemas, publishers }
}

function webhooksEntry (config: BrokerConfig, deps: BuiltinDeps): PluginEntry {
  const { defaults } = config.webhooks
  return webhooks({
    registry: deps.webhooks,
    deadLetters: deps.deadLetters,
    subscriptions: config.webhooks.subscriptions,
    retry: defaults.retry,
    timeoutMs: defaults.timeoutMs,
    concurrency: defaults.concurrency,
    maxQueued: config.webhooks.maxQueued,
    breaker: config.webhooks.breaker,
    ...(deps.redis === undefined ? {} : { redis: { connection: deps.redis, lockMs: config.webhooks.lockMs } })
  })
}

function auditOptions (config: BrokerConfig, redis: Redis | undefined, recent: MemoryAuditTrail | undefined): AuditOptions {
  return {
    topic: config.audit.topic,
    payload: config.audit.payload,
    redact: config.audit.redact,
    ...(config.audit.file === undefined ? {} : { file: resolve(config.audit.file) }),
    ...(redis === undefined ? {} : { stream: { redis, key: config.audit.stream.key, maxLen: config.audit.stream.maxLen } }),
    ...(recent === undefined ? {} : { recent })
  }
}
