import {
  EnvelopeChecker, EventRejectedError, compileFilter, toFieldErrors, traceContextProblem, typeMatchesTopic, typeToTopic,
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
 * event (`id`, `source`, `type`, `time`, tracing extensions, and what is wrong with its
 * trace context, which never refuses it); the first failure throws an
 * `EventRejectedError` with its reason. Schemas are compiled already: a check costs
 * one JSON.parse, the envelope checks and one compiled validator call. The version
 * checked against is the one `dataschema` names, else the type's latest; a type in
 * `shadow` mode lets a failing event through with the refusal it would have had.
 */
export function createRuleCheck (registry: SchemaRegistry): (rule: ValidationRule, topic: string, payload: Buffer) => EventSummary {
  const envelope = new EnvelopeChecker()

  return function checkEvent (rule: ValidationRule, topic: string, payload: Buffer): EventSummary {
    const onInvalid = rule.onInvalid
    const refuse = (reason: RejectReason, problems: readonly EventProblem[], event?: CloudEvent, version?: number): never => {
      throw new EventRejectedError(reason, topic, problems, onInvalid, event === undefined ? {} : summary(event, version))
    }

    const checked = envelope.check(payload)
    if (!checked.ok) return refuse(checked.reason, checked.errors)
    const event = checked.event
    if (!typeMatchesTopic(event.type, topic)) {
      return refuse('type_topic_mismatch', [{ path: '/type', message: `type "${event.type}" belongs on topic "${typeToTopic(event.type)}", not "${topic}"` }], event)
    }
    if (rule.schema === 'none') return summary(event)
    const version = registry.select(event.type, event.dataschema)
    if (version === undefined) {
      if (rule.schema === 'required') refuse('unknown_type', [{ path: '/type', message: `no schema is registered for type "${event.type}"` }], event)
      return summary(event)
    }
    if (version.validate(event.data)) return summary(event, version.version)
    const problems = toFieldErrors(version.validate.errors, event.data, '/data')
    // shadow: delivered as if valid, the verdict it would have had goes with it
    if (registry.config(event.type).mode === 'shadow') return { ...summary(event, version.version), shadow: { reason: 'schema_validation_failed', problems } }
    return refuse('schema_validation_failed', problems, event, version.version)
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

function summary (event: CloudEvent, schemaVersion?: number): EventSummary {
  const out: { -readonly [K in keyof EventSummary]: EventSummary[K] } = { id: event.id, type: event.type, source: event.source }
  if (schemaVersion !== undefined) out.schemaVersion = schemaVersion
  if (event.time !== undefined) out.time = event.time
  if (event.correlationid !== undefined) out.correlationid = event.correlationid
  if (event.causationid !== undefined) out.causationid = event.causationid
  const { traceparent, tracestate } = event
  if (traceparent !== undefined || tracestate !== undefined) {
    if (traceparent !== undefined) out.traceparent = traceparent
    if (tracestate !== undefined) out.tracestate = tracestate
    // checked here, where the event is read anyway: a malformed trace context is reported (audit) and goes no further
    const problem = traceContextProblem(traceparent, tracestate)
    if (problem !== undefined) out.traceProblem = problem
  }
  return out
}
