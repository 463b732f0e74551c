import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { Gauge } from 'prom-client'
import { bundledSchemasDir, cloudEventTopics, definePlugin, type Settings, service, type EventSummary, type PluginContext, type PublishAttempt } from '../../src/core/index.js'
import { createRuleCheck, noMatchingRule, ruleMatcher, type ValidationPolicy } from './check.js'
import { CheckPool } from './pool.js'
import { SchemaRegistry } from './registry.js'
import { schemaRoutes, type SchemaListing } from './routes.js'
import { summarizeSchema, type SchemaSummary } from './summary.js'
import { schemasSection, validationSection } from './config.js'

export { SchemaRegistry, type SchemaDocument, type SchemaEntry, type Draft } from './registry.js'
export { createEventCheck, type ValidationPolicy } from './check.js'
export type { SchemaListing } from './routes.js'
export type { SchemaSummary, FieldSummary } from './summary.js'

/** Options of the schema-validation plugin: the config's `schemas` and `validation` sections. */
export interface SchemaValidationOptions {
  readonly schemas: Settings<typeof schemasSection.schema>
  readonly validation: Settings<typeof validationSection.schema>
}

/** What the schema-validation plugin offers the plugins after it. */
export interface Schemas {
  /** Whether any rule applies: only then are events read (and described on the attempt). */
  readonly validating: boolean
  /** The registry's schemas, for `GET /api/schemas`. */
  readonly list: () => readonly SchemaListing[]
  /** The same with their fields summarized, for the catalog. */
  readonly summaries: () => readonly SchemaSummary[]
}

/** The schema-validation plugin's service. */
export const SCHEMAS = service<Schemas>('schemas')

const DEFAULT_SCHEMAS_DIR = './schemas'

/**
 * Checks each publish on a validated topic (see `createRuleCheck` for the checks and
 * their order). The rule is found on the event loop; a topic no rule covers passes
 * or is refused there and then. The check itself runs on `workers` worker threads
 * when there are any, so parsing and validating 1 KiB events does not slow MQTT
 * routing down; the verdicts come back in the order the publishes arrived.
 */
export const schemaValidation = definePlugin<SchemaValidationOptions>({ name: 'schema-validation', sections: [schemasSection, validationSection], setup: setupValidation })

async function setupValidation (ctx: PluginContext, { schemas, validation }: SchemaValidationOptions): Promise<(() => Promise<void>) | undefined> {
  const validating = validation.rules.length > 0 || validation.default === 'reject'
  // no rule reads events: no schema is read, no type is ever seen
  const registry = validating ? await SchemaRegistry.load(schemasDir(ctx, schemas.dir)) : undefined
  const summaries = registry === undefined ? [] : summarize(registry)
  ctx.provide(SCHEMAS, { validating, list: () => registry?.list() ?? [], summaries: () => summaries })
  ctx.routes(async function routes (app) { await app.register(schemaRoutes, { schemas: () => registry?.list() ?? [] }) })
  if (registry === undefined) return undefined
  const opts = validation
  const { rules } = opts
  ctx.hooks.cloudEventTopics(cloudEventTopics(rules))
  const ruleOf = ruleMatcher(rules)
  const checkEvent = createRuleCheck(registry)
  function checkInline (index: number, topic: string, payload: Buffer): EventSummary {
    const rule = rules[index]
    if (rule === undefined) throw new RangeError(`no validation rule ${index}`)
    return checkEvent(rule, topic, payload)
  }

  const workers = opts.workers
  const gauge = new Gauge({ name: 'ce_broker_validation_workers', help: 'Worker threads checking events; 0: checks run on the event loop', registers: [ctx.metrics] })
  let pool: CheckPool | undefined
  if (workers > 0) {
    try {
      pool = await CheckPool.start({
        size: workers,
        setup: { rules, documents: registry.documents() },
        inline: checkInline,
        onWorkerLost: (err) => {
          gauge.set(pool?.size ?? 0)
          ctx.reportError(err, { during: 'validation', remainingWorkers: pool?.size ?? 0 })
        }
      })
    } catch (err: unknown) {
      ctx.log.warn({ err }, 'validation workers did not start: checking on the event loop')
    }
  }

  gauge.set(pool?.size ?? 0)

  ctx.hooks.authorizePublish(function validateEvent (attempt: PublishAttempt): Promise<void> | undefined {
    const index = ruleOf(attempt.topic)
    const rule = rules[index] // NO_RULE (-1) finds none
    if (rule === undefined) {
      if (opts.default === 'reject') throw noMatchingRule(attempt.topic)
      return undefined
    }
    if (!rule.cloudevents) return undefined
    // the event's summary goes on the attempt: the core counts it accepted, later plugins read it
    if (pool !== undefined) return pool.check(index, attempt.topic, attempt.payload, attempt)
    attempt.describe(checkEvent(rule, attempt.topic, attempt.payload))
    return undefined
  })
  ctx.log.info({ rules: rules.length, types: registry.list().length, default: opts.default, workers: pool?.size ?? 0 }, 'validation ready')
  return async function stopValidation () {
    await pool?.close()
  }
}

/**
 * The schema folder, read at start-up; the default `./schemas` falls back to the
 * schemas bundled with the package when the working folder has none, so
 * `createBroker()` works from anywhere.
 */
function schemasDir (ctx: PluginContext, dir: string): string {
  const resolved = resolve(dir)
  if (dir !== DEFAULT_SCHEMAS_DIR || existsSync(resolved)) return resolved
  const bundled = bundledSchemasDir()
  if (bundled === undefined) return resolved
  ctx.log.info({ dir: bundled }, 'no ./schemas here: using the bundled albergue schemas')
  return bundled
}

function summarize (registry: SchemaRegistry): SchemaSummary[] {
  return registry.list().map((entry) => ({
    type: entry.type,
    file: entry.file,
    draft: entry.draft,
    ...(entry.id === undefined ? {} : { id: entry.id }),
    ...(typeof entry.schema.title === 'string' ? { title: entry.schema.title } : {}),
    fields: summarizeSchema(entry.schema, registry.documents())
  }))
}
