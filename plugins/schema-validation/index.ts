import {
  EnvelopeChecker, EventRejectedError, compileFilter, definePlugin, toFieldErrors, typeMatchesTopic, typeToTopic,
  type CloudEvent, type EventProblem, type EventSummary, type PublishAttempt, type RejectReason, type ValidationRule
} from '../../src/index.js'
import type { SchemaRegistry } from './registry.js'

export { SchemaRegistry, type SchemaEntry, type Draft } from './registry.js'

/** Options of the schema-validation plugin: the config's `validation` section and a loaded registry. */
export interface SchemaValidationOptions {
  /** First matching rule wins. */
  readonly rules: readonly ValidationRule[]
  /** Topics no rule matches: `pass` (plain MQTT) or `reject` (reason `no_matching_rule`). */
  readonly default: 'pass' | 'reject'
  readonly registry: SchemaRegistry
}

/**
 * Checks each publish on a validated topic, in PRODUCT §2 order: JSON, the
 * CloudEvents 1.0 envelope, `type` ⇄ topic, a registered schema for the type,
 * then `data` against it. The first failure throws an `EventRejectedError` with
 * its reason; the rule's `onInvalid` makes it dead-letter (ack) or disconnect.
 * Schemas are compiled at start-up; a publish costs one JSON.parse, the envelope
 * checks and one compiled validator call.
 */
export const schemaValidation = definePlugin<SchemaValidationOptions>('schema-validation', async (ctx, opts) => {
  const check = createEventCheck(opts)
  ctx.hooks.authorizePublish(function validateEvent (attempt: PublishAttempt): void {
    if (check(attempt.topic, attempt.payload)) ctx.countEvent('accepted')
  })
  ctx.log.info({ rules: opts.rules.length, types: opts.registry.list().length, default: opts.default }, 'validation ready')
})

/**
 * The checks of one publish, as a plain function (the plugin's hook, and what the
 * micro-benchmark times). Returns true for an accepted event on a validated topic,
 * false for a topic that is not validated; throws an `EventRejectedError` otherwise.
 */
export function createEventCheck (opts: SchemaValidationOptions): (topic: string, payload: Buffer) => boolean {
  const envelope = new EnvelopeChecker()
  const rules = opts.rules.map((rule) => ({ rule, matches: compileFilter(rule.match) }))
  const { registry } = opts

  return function checkEvent (topic: string, payload: Buffer): boolean {
    let rule: ValidationRule | undefined
    for (const candidate of rules) {
      if (candidate.matches(topic)) {
        rule = candidate.rule
        break
      }
    }
    if (rule === undefined) {
      if (opts.default === 'reject') {
        throw new EventRejectedError('no_matching_rule', topic, [{ path: '', message: `no validation rule matches topic "${topic}"` }], 'dlq')
      }
      return false
    }
    if (!rule.cloudevents) return false
    const onInvalid = rule.onInvalid
    const refuse = (reason: RejectReason, problems: readonly EventProblem[], event?: CloudEvent): never => {
      throw new EventRejectedError(reason, topic, problems, onInvalid, event === undefined ? {} : summary(event))
    }

    const checked = envelope.check(payload)
    if (!checked.ok) return refuse(checked.reason, checked.errors)
    const event = checked.event
    if (!typeMatchesTopic(event.type, topic)) {
      return refuse('type_topic_mismatch', [{ path: '/type', message: `type "${event.type}" belongs on topic "${typeToTopic(event.type)}", not "${topic}"` }], event)
    }
    if (rule.schema !== 'none') {
      // a dataschema naming a registered $id picks that schema; otherwise the type's
      const validate = (event.dataschema === undefined ? undefined : registry.forId(event.dataschema)) ?? registry.forType(event.type)
      if (validate === undefined) {
        if (rule.schema === 'required') return refuse('unknown_type', [{ path: '/type', message: `no schema is registered for type "${event.type}"` }], event)
      } else if (!validate(event.data)) {
        return refuse('schema_validation_failed', toFieldErrors(validate.errors, event.data, '/data'), event)
      }
    }
    return true
  }
}

function summary (event: CloudEvent): EventSummary {
  const out: { -readonly [K in keyof EventSummary]: EventSummary[K] } = { id: event.id, type: event.type, source: event.source }
  if (event.correlationid !== undefined) out.correlationid = event.correlationid
  if (event.causationid !== undefined) out.causationid = event.causationid
  if (event.traceparent !== undefined) out.traceparent = event.traceparent
  return out
}
