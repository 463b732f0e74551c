import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { Gauge } from 'prom-client'
import { bundledSchemasDir, cloudEventTopics, definePlugin, type Settings, service, type EventSummary, type PluginContext, type PluginTracing, type PublishAttempt } from '../../src/core/index.js'
import { createRuleCheck, noMatchingRule, ruleMatcher } from './check.js'
import { LiveRegistry } from './live.js'
import { ValidationTally } from './tally.js'
import { CheckPool, type InlineCheck } from './pool.js'
import type { WorkerSetup } from './protocol.js'
import { RedisRegistryStore } from './redis-store.js'
import type { RegistryChange, SchemaRegistry } from './registry.js'
import type { SchemaDocument } from './folder.js'
import { schemaRoutes, type SchemaListing } from './routes.js'
import { FileRegistryStore } from './store.js'
import { summarizeSchema, type SchemaSummary } from './summary.js'
import { schemasSection, validationSection, type ValidationRule } from './config.js'

export { SchemaRegistry, type SchemaEntry } from './registry.js'
export type { SchemaDocument, Draft } from './folder.js'
export { checkCompatibility, narrowings, COMPATIBILITY_LEVELS, type BreakingChange, type CompatibilityLevel } from './compatibility.js'
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
  /** Every type's latest version and settings, with this node's shadow failures. */
  readonly list: () => readonly SchemaListing[]
  /** The same with their fields summarized, for the catalog. */
  readonly summaries: () => readonly SchemaSummary[]
  /** The shared definitions the types' schemas may `$ref` (the AsyncAPI document carries them). */
  readonly definitions: () => readonly SchemaDocument[]
}

/** The schema-validation plugin's service. */
export const SCHEMAS = service<Schemas>('schemas')

const DEFAULT_SCHEMAS_DIR = './schemas'

/**
 * Checks each publish on a validated topic (see `createRuleCheck` for the checks and
 * their order) against the live registry: the schema folder registered at start-up,
 * versions added through `/api/schemas`, and those other nodes add. The rule is found on
 * the event loop; a topic no rule covers passes or is refused there and then. The check
 * itself runs on `workers` worker threads when there are any, so parsing and validating
 * 1 KiB events does not slow MQTT routing down; the verdicts come back in the order the
 * publishes arrived. A registry change reaches each worker before the batches after it.
 */
export const schemaValidation = definePlugin<SchemaValidationOptions>({ name: 'schema-validation', sections: [schemasSection, validationSection], setup: setupValidation })

async function setupValidation (ctx: PluginContext, { schemas, validation }: SchemaValidationOptions): Promise<(() => Promise<void>) | undefined> {
  const validating = validation.rules.length > 0 || validation.default === 'reject'
  const tally = new ValidationTally(ctx.metrics)
  // no rule reads events: no schema is read, no type is ever seen
  let pool: CheckPool | undefined
  /** Changes made while the workers start, after the snapshot they start from: sent to them once they are up. */
  let missed: RegistryChange[] | undefined
  let summaries: SchemaSummary[] | undefined
  const live = validating
    ? await LiveRegistry.start({
      dir: schemasDir(ctx, schemas.dir),
      store: ctx.redis === undefined
        ? await FileRegistryStore.open(resolve(schemas.dataDir), (err) => { ctx.log.warn({ err, dataDir: schemas.dataDir }, 'schemas.dataDir cannot be written: registered schema versions are kept in memory only, until the broker stops (set schemas.dataDir to a writable folder, or a volume)') })
        : new RedisRegistryStore(ctx.redis),
      defaults: { compatibility: schemas.compatibility, mode: schemas.mode },
      log: ctx.log,
      onChange: (change) => {
        summaries = undefined
        if (pool !== undefined) pool.broadcast(change)
        else missed?.push(change)
        ctx.log.info({ type: change.kind === 'version' ? change.version.type : change.type, ...(change.kind === 'version' ? { version: change.version.version } : change.config) }, change.kind === 'version' ? 'schema version in force' : 'schema settings changed')
      }
    })
    : undefined
  const registry = live?.registry
  ctx.provide(SCHEMAS, {
    validating,
    list: () => listing(registry, tally),
    summaries: () => (summaries ??= registry === undefined ? [] : summarize(registry)),
    definitions: () => registry?.definitions() ?? []
  })
  ctx.routes(async function routes (app) { await app.register(schemaRoutes, { live, list: () => listing(registry, tally) }) })
  if (live === undefined || registry === undefined) return undefined
  tally.known = (type) => registry.latest(type) !== undefined
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

  const gauge = new Gauge({ name: 'ce_broker_validation_workers', help: 'Worker threads checking events; 0: checks run on the event loop', registers: [ctx.metrics] })
  missed = []
  pool = await startPool(ctx, opts.workers, { rules, registry: registry.snapshot() }, checkInline, tally, gauge)
  for (const change of missed) pool?.broadcast(change)
  missed = undefined
  gauge.set(pool?.size ?? 0)

  const checkOnce = checker(pool, checkEvent, tally)
  const tracing = ctx.tracing
  ctx.hooks.authorizePublish(function validateEvent (attempt: PublishAttempt): Promise<void> | undefined {
    const index = ruleOf(attempt.topic)
    const rule = rules[index] // NO_RULE (-1) finds none
    if (rule === undefined) {
      if (opts.default === 'reject') throw noMatchingRule(attempt.topic)
      return undefined
    }
    if (!rule.cloudevents) return undefined
    // the core counts the described event accepted, later plugins read it
    return tracing === undefined ? checkOnce(index, rule, attempt) : timed(tracing, attempt, () => checkOnce(index, rule, attempt))
  })
  ctx.log.info({ rules: rules.length, types: registry.types().length, store: live.kind, default: opts.default, workers: pool?.size ?? 0 }, 'validation ready')
  return async function stopValidation () {
    await pool?.close()
    await live.close()
  }
}

/** One check: on a worker (the promise of its verdict), or here; the event's summary goes on the attempt. */
function checker (pool: CheckPool | undefined, checkEvent: ReturnType<typeof createRuleCheck>, tally: ValidationTally): (index: number, rule: ValidationRule, attempt: PublishAttempt) => Promise<void> | undefined {
  return function checkOnce (index, rule, attempt) {
    if (pool !== undefined) return pool.check(index, attempt.topic, attempt.payload, attempt)
    let event: EventSummary
    try {
      event = checkEvent(rule, attempt.topic, attempt.payload)
    } catch (err: unknown) {
      tally.refused(err)
      throw err
    }
    tally.note(event, undefined)
    attempt.describe(event)
    return undefined
  }
}

/**
 * `check` as the `validate` step of the publish's trace: timed here, on the event loop,
 * around the worker's round trip when a worker checks it.
 */
function timed (tracing: PluginTracing, attempt: PublishAttempt, check: () => Promise<void> | undefined): Promise<void> | undefined {
  const startedAt = performance.now()
  let pending: Promise<void> | undefined
  try {
    pending = check()
  } catch (err: unknown) {
    tracing.step(attempt, 'validate', startedAt, err)
    throw err
  }
  if (pending === undefined) {
    tracing.step(attempt, 'validate', startedAt)
    return undefined
  }
  return pending.then(() => { tracing.step(attempt, 'validate', startedAt) }, (err: unknown) => {
    tracing.step(attempt, 'validate', startedAt, err)
    throw err
  })
}

/** The validation workers, or `undefined` for none (`validation.workers: 0`, or they failed to start: checks run on the event loop). */
async function startPool (ctx: PluginContext, size: number, setup: WorkerSetup, inline: InlineCheck, tally: ValidationTally, gauge: Gauge): Promise<CheckPool | undefined> {
  if (size === 0) return undefined
  try {
    const pool: CheckPool = await CheckPool.start({
      size,
      setup,
      inline,
      tally: (event, reason) => { tally.note(event, reason) },
      onWorkerLost: (err) => {
        gauge.set(pool.size)
        ctx.reportError(err, { during: 'validation', remainingWorkers: pool.size })
      }
    })
    return pool
  } catch (err: unknown) {
    ctx.log.warn({ err }, 'validation workers did not start: checking on the event loop')
    return undefined
  }
}

function listing (registry: SchemaRegistry | undefined, tally: ValidationTally): SchemaListing[] {
  return (registry?.list() ?? []).map((entry) => ({ ...entry, shadowFailures: tally.shadowFailures(entry.type) }))
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

function historyOf (registry: SchemaRegistry, type: string): SchemaSummary['history'] {
  return registry.history(type).map((v) => ({ version: v.version, registeredAt: v.registeredAt, ...(v.file === undefined ? {} : { file: v.file }) }))
}

function summarize (registry: SchemaRegistry): SchemaSummary[] {
  return registry.list().map((entry) => ({
    type: entry.type,
    file: entry.file,
    draft: entry.draft,
    ...(entry.id === undefined ? {} : { id: entry.id }),
    ...(typeof entry.schema.title === 'string' ? { title: entry.schema.title } : {}),
    version: entry.version,
    compatibility: entry.compatibility,
    mode: entry.mode,
    history: historyOf(registry, entry.type),
    fields: summarizeSchema(entry.schema, registry.documents())
  }))
}
