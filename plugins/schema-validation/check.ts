import {
  EnvelopeChecker, EventRejectedError, compileFilter, toFieldErrors, typeMatchesTopic, typeToTopic,
  type CloudEvent, type EventProblem, type EventSummary, type RejectReason
} from '../../src/core/index.js'
import type { SchemaRegistry } from './registry.js'
import type { ValidationRule } from './config.js'

/** What decides how a topic's publishes are checked: the config's `validation` section. */
export interface ValidationPolicy {
  /** First matching rule wins. */
  readonly rules: readonly ValidationRule[]
  /** Topics no rule matches: `pass` (plain MQTT) or `reject` (reason `no_matching_rule`). */
  readonly default: 'pass' | 'reject'
}

/** No rule matches the topic. */
export const NO_RULE = -1

/** The index of the first rule whose filter matches a topic, or `NO_RULE`. */
export function ruleMatcher (rules: readonly ValidationRule[]): (topic: string) => number {
  const filters = rules.map((rule) => compileFilter(rule.match))
  return function ruleOf (topic: string): number {
    for (let i = 0; i < filters.length; i++) {
      if (filters[i]?.(topic) === true) return i
    }
    return NO_RULE
  }
}

/** The refusal of a topic that no rule matches, under `validation.default: reject`. */
export function noMatchingRule (topic: string): EventRejectedError {
  return new EventRejectedError('no_matching_rule', topic, [{ path: '', message: `no validation rule matches topic "${topic}"` }], 'dlq')
}

/**
 * The checks of one publish on a topic whose rule asks for CloudEvents, in PRODUCT §2
 * order: JSON, the CloudEvents 1.0 envelope, `type` ⇄ topic, a registered schema for
 * the type, then `data` against it. Returns what later plugins need to know of the
 * event (`id`, `source`, `type`, `time`, tracing extensions); the first failure throws an
 * `EventRejectedError` with its reason. Schemas are compiled already: a check costs
 * one JSON.parse, the envelope checks and one compiled validator call.
 */
export function createRuleCheck (registry: SchemaRegistry): (rule: ValidationRule, topic: string, payload: Buffer) => EventSummary {
  const envelope = new EnvelopeChecker()

  return function checkEvent (rule: ValidationRule, topic: string, payload: Buffer): EventSummary {
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
    if (rule.schema === 'none') return summary(event)
    // a dataschema naming a registered $id picks that schema; otherwise the type's
    const validate = (event.dataschema === undefined ? undefined : registry.forId(event.dataschema)) ?? registry.forType(event.type)
    if (validate === undefined) {
      if (rule.schema === 'required') refuse('unknown_type', [{ path: '/type', message: `no schema is registered for type "${event.type}"` }], event)
    } else if (!validate(event.data)) {
      refuse('schema_validation_failed', toFieldErrors(validate.errors, event.data, '/data'), event)
    }
    return summary(event)
  }
}

/**
 * The whole decision for one publish in the calling thread: returns true for an
 * accepted event on a validated topic, false for a topic that is not validated, and
 * throws an `EventRejectedError` otherwise. What the micro-benchmark times.
 */
export function createEventCheck (opts: ValidationPolicy & { readonly registry: SchemaRegistry }): (topic: string, payload: Buffer) => boolean {
  const ruleOf = ruleMatcher(opts.rules)
  const checkEvent = createRuleCheck(opts.registry)
  return function check (topic: string, payload: Buffer): boolean {
    const rule = opts.rules[ruleOf(topic)]
    if (rule === undefined) {
      if (opts.default === 'reject') throw noMatchingRule(topic)
      return false
    }
    if (!rule.cloudevents) return false
    checkEvent(rule, topic, payload)
    return true
  }
}

function summary (event: CloudEvent): EventSummary {
  const out: { -readonly [K in keyof EventSummary]: EventSummary[K] } = { id: event.id, type: event.type, source: event.source }
  if (event.time !== undefined) out.time = event.time
  if (event.correlationid !== undefined) out.correlationid = event.correlationid
  if (event.causationid !== undefined) out.causationid = event.causationid
  if (event.traceparent !== undefined) out.traceparent = event.traceparent
  return out
}
