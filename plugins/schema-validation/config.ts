import { availableParallelism } from 'node:os'
import { Type } from '@sinclair/typebox'

import { ConfigError, configSection, enumOf, setting, topicFilterProblem, type Settings } from '../../src/core/index.js'
import { COMPATIBILITY_LEVELS } from './compatibility.js'
import { SCHEMA_MODES } from './versions.js'

/** Where the schemas come from, where registered versions are kept, and the registry's default rules. */
export const schemasSection = configSection({
  key: 'schemas',
  schema: Type.Object({
    dir: Type.String({
      minLength: 1,
      default: './schemas',
      ...setting({ env: 'CE_BROKER_SCHEMAS_DIR', flag: '--schemas', flagArg: 'DIR', doc: 'folder of JSON Schema files, one per CloudEvent type, registered at start-up (see [schemas/](schemas/README.md) and [The schema registry](#the-schema-registry))' })
    }),
    dataDir: Type.String({
      minLength: 1,
      default: './data',
      ...setting({ env: 'CE_BROKER_DATA_DIR', flag: '--data-dir', flagArg: 'DIR', doc: 'embedded: the folder the registry keeps its versions in (`schema-registry.json`), created if missing; with Redis they live in Redis' })
    }),
    compatibility: enumOf(COMPATIBILITY_LEVELS, {
      default: 'BACKWARD',
      ...setting({ env: 'CE_BROKER_SCHEMAS_COMPATIBILITY', doc: 'the rule a type\'s new version must pass unless the type sets its own (`PUT /api/schemas/:type/config`)' })
    }),
    mode: enumOf(SCHEMA_MODES, {
      default: 'enforce',
      ...setting({ env: 'CE_BROKER_SCHEMAS_MODE', doc: '`enforce`: events that fail their type\'s schema are refused; `shadow`: delivered, audited `would_reject`; unless the type sets its own' })
    })
  }, { additionalProperties: false })
})

/** A validation rule: which topics it covers and how their publishes are checked. Only `match` must be given. */
const ruleSchema = Type.Object({
  /** MQTT topic filter (`+`, `#`). */
  match: Type.String({ minLength: 1 }),
  /** Payloads must be CloudEvents 1.0 in structured JSON mode whose `type` maps to the topic. */
  cloudevents: Type.Boolean({ default: true }),
  /** `required`: a schema must be registered for the type; `optional`: checked when one is; `none`. */
  schema: enumOf(['required', 'optional', 'none'], { default: 'required' }),
  /** `dlq`: acked and dead-lettered; `disconnect`: dead-lettered and the publisher disconnected. */
  onInvalid: enumOf(['dlq', 'disconnect'], { default: 'dlq' })
}, { additionalProperties: false })

/** A validation rule, its defaults filled in. */
export type ValidationRule = Settings<typeof ruleSchema>

const validationSchema = Type.Object({
  default: enumOf(['pass', 'reject'], {
    default: 'pass',
    ...setting({ env: 'CE_BROKER_VALIDATION_DEFAULT', doc: '`pass`: topics no rule matches are plain MQTT; `reject`: they are refused (reason `no_matching_rule`)' })
  }),
  // checked in order; the first rule whose `match` filter matches the topic applies
  rules: Type.Array(ruleSchema, {
    default: [{ match: 'albergue/#', cloudevents: true, schema: 'required', onInvalid: 'dlq' }],
    ...setting({ shownDefault: '`[{ match: "albergue/#" }]`', doc: 'validation rules, first match wins (see [Validation](#validation)); `[]` turns validation off' })
  }),
  workers: Type.Integer({
    minimum: 0,
    maximum: 64,
    // one per core beyond the first, which runs the event loop
    default: Math.min(Math.max(availableParallelism() - 1, 0), 4),
    ...setting({
      env: 'CE_BROKER_VALIDATION_WORKERS',
      flag: '--validation-workers',
      flagArg: 'N',
      shownDefault: 'cores − 1, at most 4',
      doc: 'worker threads that parse and check events; `0` checks on the event loop (see [Validation workers](#validation-workers))'
    })
  })
}, { additionalProperties: false })

/** Which publishes are checked, and how. */
export const validationSection = configSection({ key: 'validation', schema: validationSchema, check: checkRules })

/** Refuse a rule that cannot work, naming it. */
function checkRules (validation: Settings<typeof validationSchema>): void {
  for (const [index, rule] of validation.rules.entries()) {
    const path = `validation.rules.${index}`
    const problem = topicFilterProblem(rule.match)
    if (problem !== undefined) throw new ConfigError('config', `${path}.match`, `${problem}, got ${JSON.stringify(rule.match)}`)
    if (!rule.cloudevents && rule.schema !== 'none') {
      throw new ConfigError('config', `${path}.schema`, `must be "none" when cloudevents is false (schemas check a CloudEvent's data), got ${JSON.stringify(rule.schema)}`)
    }
  }
}
