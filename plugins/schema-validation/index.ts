import { Gauge } from 'prom-client'
import { definePlugin, type EventSummary, type PublishAttempt } from '../../src/index.js'
import { createRuleCheck, noMatchingRule, ruleMatcher, type ValidationPolicy } from './check.js'
import { CheckPool } from './pool.js'
import type { SchemaRegistry } from './registry.js'

export { SchemaRegistry, type SchemaDocument, type SchemaEntry, type Draft } from './registry.js'
export { createEventCheck, type ValidationPolicy } from './check.js'

/** Options of the schema-validation plugin: the config's `validation` section and a loaded registry. */
export interface SchemaValidationOptions extends ValidationPolicy {
  readonly registry: SchemaRegistry
  /**
   * Worker threads that run the checks; 0 checks on the broker's event loop.
   * Default 0 here; the broker passes `validation.workers`.
   */
  readonly workers?: number
}

/**
 * Checks each publish on a validated topic (see `createRuleCheck` for the checks and
 * their order). The rule is found on the event loop; a topic no rule covers passes
 * or is refused there and then. The check itself runs on `workers` worker threads
 * when there are any, so parsing and validating 1 KiB events does not slow MQTT
 * routing down; the verdicts come back in the order the publishes arrived.
 */
export const schemaValidation = definePlugin<SchemaValidationOptions>('schema-validation', async (ctx, opts) => {
  const { rules, registry } = opts
  const ruleOf = ruleMatcher(rules)
  const checkEvent = createRuleCheck(registry)
  function checkInline (index: number, topic: string, payload: Buffer): EventSummary {
    const rule = rules[index]
    if (rule === undefined) throw new RangeError(`no validation rule ${index}`)
    return checkEvent(rule, topic, payload)
  }

  const workers = opts.workers ?? 0
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
})
