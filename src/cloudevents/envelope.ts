import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv'
import addFormats from 'ajv-formats'
import type { EventProblem } from '../errors.js'

/** A CloudEvents 1.0 event in structured JSON mode, as checked by `EnvelopeChecker`. */
export interface CloudEvent {
  readonly specversion: '1.0'
  readonly id: string
  readonly source: string
  readonly type: string
  readonly time?: string
  readonly dataschema?: string
  readonly datacontenttype?: string
  readonly subject?: string
  readonly data?: unknown
  readonly data_base64?: string
  /** Extension attributes: lower-case alphanumeric names, scalar values. */
  readonly [extension: string]: unknown
}

/** One problem found in an event: a JSON pointer into the event and what is wrong there. */
export type FieldError = EventProblem

/** Why an event was refused before its schema was looked at. */
export type EnvelopeReason = 'invalid_json' | 'invalid_cloudevent'

export type EnvelopeResult =
  | { readonly ok: true, readonly event: CloudEvent }
  | { readonly ok: false, readonly reason: EnvelopeReason, readonly errors: readonly FieldError[] }

/** At most this many errors are reported for one event. */
export const MAX_ERRORS = 20

const CONTEXT_ATTRIBUTES = ['specversion', 'id', 'source', 'type', 'time', 'dataschema', 'datacontenttype', 'subject', 'data', 'data_base64']

/**
 * The CloudEvents 1.0 envelope as JSON Schema: required attributes, RFC 3339 `time`,
 * absolute-URI `dataschema`, URI-reference `source`, `data` xor `data_base64`,
 * extension names `[a-z0-9]{1,20}` with scalar values.
 */
const ENVELOPE_SCHEMA = {
  type: 'object',
  required: ['specversion', 'id', 'source', 'type'],
  properties: {
    specversion: { const: '1.0' },
    id: { type: 'string', minLength: 1 },
    source: { type: 'string', minLength: 1, format: 'uri-reference' },
    type: { type: 'string', minLength: 1 },
    time: { type: 'string', format: 'date-time' },
    dataschema: { type: 'string', format: 'uri' },
    datacontenttype: { type: 'string', minLength: 1 },
    subject: { type: 'string', minLength: 1 },
    data: true,
    data_base64: { type: 'string', pattern: '^[A-Za-z0-9+/]*={0,2}$' }
  },
  not: { required: ['data', 'data_base64'], properties: { data: true, data_base64: true } },
  propertyNames: { anyOf: [{ enum: CONTEXT_ATTRIBUTES }, { pattern: '^[a-z0-9]{1,20}$' }] },
  additionalProperties: { type: ['string', 'number', 'boolean'] }
} as const

/**
 * Checks structured-mode CloudEvents 1.0 envelopes. Compiled once per broker at
 * start-up; `check` then costs one JSON.parse and one compiled validator call.
 */
export class EnvelopeChecker {
  readonly #validate: ValidateFunction

  constructor () {
    const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true })
    addFormats.default(ajv, ['date-time', 'uri', 'uri-reference'])
    this.#validate = ajv.compile(ENVELOPE_SCHEMA)
  }

  /** Parse `payload` as JSON and check it is a CloudEvents 1.0 envelope. */
  check (payload: Buffer | string): EnvelopeResult {
    let parsed: unknown
    try {
      parsed = JSON.parse(typeof payload === 'string' ? payload : payload.toString('utf8'))
    } catch (err: unknown) {
      return { ok: false, reason: 'invalid_json', errors: [{ path: '', message: err instanceof Error ? err.message : String(err) }] }
    }
    return this.checkValue(parsed)
  }

  /** Check an already parsed value (HTTP ingress parses JSON itself). */
  checkValue (value: unknown): EnvelopeResult {
    if (this.#validate(value) && isEvent(value)) return { ok: true, event: value }
    return { ok: false, reason: 'invalid_cloudevent', errors: toFieldErrors(this.#validate.errors, value) }
  }
}

function isEvent (value: unknown): value is CloudEvent {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/**
 * ajv errors → `{ path, message }`, at most `MAX_ERRORS`, paths prefixed with `prefix`
 * (`/data` for schema errors). With `showValue` (envelope attributes) the message
 * names the value received; schema errors keep ajv's message as PRODUCT §3 shows it
 * (`must be >= 1`), the record carrying the whole payload beside them.
 */
export function toFieldErrors (errors: readonly ErrorObject[] | null | undefined, root: unknown, prefix = '', showValue = prefix === ''): FieldError[] {
  const out: FieldError[] = []
  for (const error of errors ?? []) {
    if (out.length >= MAX_ERRORS) break
    out.push(describe(error, root, prefix, showValue))
  }
  return out
}

function describe (error: ErrorObject, root: unknown, prefix: string, showValue: boolean): FieldError {
  const path = prefix + error.instancePath
  switch (error.keyword) {
    case 'required':
      return { path: `${path}/${String(error.params.missingProperty)}`, message: 'is required' }
    case 'propertyNames':
      return { path: `${path}/${String(error.params.propertyName)}`, message: 'is not a valid extension attribute name: use 1 to 20 lower-case letters and digits' }
    case 'additionalProperties':
      return { path: `${path}/${String(error.params.additionalProperty)}`, message: 'is not allowed' }
    case 'not':
      return path === prefix
        ? { path: `${prefix}/data_base64`, message: 'must not be present together with data' }
        : { path, message: error.message ?? 'is not allowed' }
    default:
      return { path, message: showValue ? `${error.message ?? error.keyword}, got ${shortJson(valueAt(root, error.instancePath))}` : error.message ?? error.keyword }
  }
}

function valueAt (root: unknown, pointer: string): unknown {
  let node = root
  for (const raw of pointer.split('/').slice(1)) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~')
    node = typeof node === 'object' && node !== null ? Reflect.get(node, key) : undefined
  }
  return node
}

function shortJson (value: unknown): string {
  const text = JSON.stringify(value) ?? String(value)
  return text.length > 80 ? `${text.slice(0, 77)}...` : text
}
