import { compileFilter } from '../topics.js'

/** What `cloudEventTopics` reads of a validation rule (the schema-validation plugin's setting). */
interface CloudEventRule {
  readonly match: string
  readonly cloudevents: boolean
}

/** CloudEvent `type` ⇄ MQTT topic: `albergue.v1.booking.reserved` ⇄ `albergue/v1/booking/reserved`. */
export function typeToTopic (type: string): string {
  return type.replaceAll('.', '/')
}

/** MQTT topic → the CloudEvent `type` published on it. */
export function topicToType (topic: string): string {
  return topic.replaceAll('/', '.')
}

/** Whether `type` maps to `topic` (`typeToTopic(type) === topic`), compared in place: it runs on every event. */
export function typeMatchesTopic (type: string, topic: string): boolean {
  if (type.length !== topic.length) return false
  for (let i = 0; i < type.length; i++) {
    const code = type.charCodeAt(i)
    if ((code === 46 /* . */ ? 47 /* / */ : code) !== topic.charCodeAt(i)) return false
  }
  return true
}

/**
 * A topic as the HTTP API takes it, as an MQTT topic: a topic with no `/` is in the
 * dotted form of a CloudEvent type and maps like one (`albergue.v1.booking.reserved` →
 * `albergue/v1/booking/reserved`); a topic with a `/` is an MQTT topic already, whose
 * dots are part of its levels (`sensors/v1.2/temp` stays as it is). A one-level topic
 * without dots is the same in both forms.
 */
export function dottedToTopic (topic: string): string {
  return topic.includes('/') ? topic : typeToTopic(topic)
}

/**
 * A topic filter as the HTTP API takes it, as an MQTT filter, the way webhook
 * subscriptions read theirs (PRODUCT §4): a filter with `/`, `+` or `#` is an MQTT
 * filter already; otherwise it is dotted, `.` separates levels and a `*` level is `#`
 * at the end (`albergue.v1.booking.*` → `albergue/v1/booking/#`) and `+` inside.
 */
export function dottedToFilter (filter: string): string {
  if (filter.includes('/') || filter.includes('+') || filter.includes('#')) return filter
  return filter.split('.').map((level, i, levels) => level === '*' ? (i === levels.length - 1 ? '#' : '+') : level).join('/')
}

/**
 * Whether publishes on a topic must be CloudEvents under `rules`: the first rule
 * matching it says so (`cloudevents`, true unless a rule turns it off). A topic no
 * rule matches is plain MQTT. What the HTTP publish route asks before wrapping a
 * payload that is only an event's data.
 */
export function cloudEventTopics (rules: readonly CloudEventRule[]): (topic: string) => boolean {
  const matchers = rules.map((rule) => ({ matches: compileFilter(rule.match), cloudevents: rule.cloudevents }))
  return function isCloudEventTopic (topic: string): boolean {
    return matchers.find((m) => m.matches(topic))?.cloudevents ?? false
  }
}
