import { Type, type Static } from '@sinclair/typebox'
import { Ajv, type ErrorObject } from 'ajv'
import { BadRequestError, compileFilter, dottedToFilter, isRfc3339, topicFilterProblem } from '../../src/core/index.js'
import type { DeadLetterEntry } from './store.js'

/** Most entries a redrive's dry run shows. */
export const SAMPLE_SIZE = 10

/** Which dead letters a redrive takes; every field given must match. */
const filterSchema = Type.Object({
  reason: Type.Optional(Type.String({ minLength: 1 })),
  /** MQTT filter or dotted form (`albergue.v1.booking.*`), matched against the original topic. */
  topic: Type.Optional(Type.String({ minLength: 1 })),
  /** The original event's CloudEvent `type`. */
  type: Type.Optional(Type.String({ minLength: 1 })),
  /** The webhook subscription of a delivery dead letter. */
  subscription: Type.Optional(Type.String({ minLength: 1 })),
  /** RFC 3339: the record's `time` at or after it. */
  from: Type.Optional(Type.String({ minLength: 1 })),
  /** RFC 3339: the record's `time` before it. */
  to: Type.Optional(Type.String({ minLength: 1 }))
}, { additionalProperties: false })

/** The body of `POST /api/dlq/replay`. */
const bodySchema = Type.Object({
  /** Required, `{}` for every entry: a body without it is more likely a mistake than a wish to replay all. */
  filter: filterSchema,
  dryRun: Type.Optional(Type.Boolean()),
  /** At most this many of the matching entries, oldest first. */
  limit: Type.Optional(Type.Integer({ minimum: 1 }))
}, { additionalProperties: false })

export type RedriveFilter = Static<typeof filterSchema>
export type RedriveBody = Static<typeof bodySchema>

/** A checked redrive request: the filter as given, and the test it stands for. */
export interface RedriveRequest {
  readonly filter: RedriveFilter
  readonly dryRun: boolean
  readonly limit: number | undefined
  readonly matches: (entry: DeadLetterEntry) => boolean
}

/** Reads redrive bodies; its validator is compiled once, at setup. */
export class RedriveBodyReader {
  readonly #validate = new Ajv({ allErrors: false, strict: true }).compile<RedriveBody>(bodySchema)

  /** The request, or a `BadRequestError` naming the key and the value that are wrong. */
  read (body: unknown): RedriveRequest {
    const given = body ?? {}
    if (!this.#validate(given)) throw new BadRequestError(problemOf(this.#validate.errors?.[0], given))
    const { filter } = given
    for (const key of ['from', 'to'] as const) {
      const value = filter[key]
      if (value !== undefined && !isRfc3339(value)) throw new BadRequestError(`filter.${key} must be an RFC 3339 date-time, got ${JSON.stringify(value)}`)
    }
    const mqttFilter = filter.topic === undefined ? undefined : dottedToFilter(filter.topic)
    const problem = mqttFilter === undefined ? undefined : topicFilterProblem(mqttFilter)
    if (problem !== undefined) throw new BadRequestError(`filter.topic ${JSON.stringify(filter.topic)} ${problem}`)
    return { filter, dryRun: given.dryRun ?? false, limit: given.limit, matches: matcher(filter, mqttFilter) }
  }
}

function matcher (filter: RedriveFilter, mqttFilter: string | undefined): (entry: DeadLetterEntry) => boolean {
  const topicMatches = mqttFilter === undefined ? undefined : compileFilter(mqttFilter)
  const from = filter.from === undefined ? undefined : Date.parse(filter.from)
  const to = filter.to === undefined ? undefined : Date.parse(filter.to)
  return function matchesFilter ({ record }: DeadLetterEntry): boolean {
    const { data } = record
    if (filter.reason !== undefined && data.reason !== filter.reason) return false
    if (filter.subscription !== undefined && data.subscription !== filter.subscription) return false
    if (topicMatches !== undefined && !topicMatches(data.topic)) return false
    if (filter.type !== undefined && typeOf(data.payload) !== filter.type) return false
    const time = Date.parse(record.time)
    if (from !== undefined && !(time >= from)) return false
    if (to !== undefined && !(time < to)) return false
    return true
  }
}

/** The CloudEvent `type` of a dead letter's original payload, when it was a JSON object with one. */
function typeOf (payload: unknown): string | undefined {
  if (typeof payload !== 'object' || payload === null || !('type' in payload)) return undefined
  return typeof payload.type === 'string' ? payload.type : undefined
}

function problemOf (error: ErrorObject | undefined, body: unknown): string {
  if (error === undefined) return 'the body is invalid'
  const path = error.instancePath.split('/').slice(1)
  if (error.keyword === 'additionalProperties') {
    const known = path.length === 0 ? 'filter, dryRun, limit' : Object.keys(filterSchema.properties).join(', ')
    return `${[...path, String(error.params.additionalProperty)].join('.')} is not a known key; known keys: ${known}`
  }
  if (error.keyword === 'required') return `${[...path, String(error.params.missingProperty)].join('.')} is required ({} matches every dead letter)`
  const name = path.length === 0 ? 'the body' : path.join('.')
  return `${name} ${error.message ?? error.keyword}, got ${JSON.stringify(valueAt(body, path))}`
}

function valueAt (value: unknown, path: readonly string[]): unknown {
  let at = value
  for (const key of path) at = typeof at === 'object' && at !== null ? Reflect.get(at, key) : undefined
  return at
}
