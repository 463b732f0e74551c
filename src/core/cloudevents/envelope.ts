import type { ErrorObject, Format } from 'ajv'
import { fullFormats } from 'ajv-formats/dist/formats.js'
import type { EventProblem } from '../errors.js'
import { isRfc3339 } from './rfc3339.js'
import { MAX_JSON_DEPTH, mayNestDeeperThan, nestedDeeperThan, parseJson } from '../payload.js'

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

const REQUIRED = ['specversion', 'id', 'source', 'type'] as const
const OPTIONAL_STRINGS = ['datacontenttype', 'subject'] as const
const CONTEXT_ATTRIBUTES: ReadonlySet<string> = new Set([...REQUIRED, ...OPTIONAL_STRINGS, 'time', 'dataschema', 'data', 'data_base64'])
const EXTENSION_NAME = /^[a-z0-9]{1,20}$/
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/
/** Distinct `source` / `dataschema` values remembered as checked; a service sends few. */
const URI_CACHE_SIZE = 1024

/**
 * Checks structured-mode CloudEvents 1.0 envelopes (PRODUCT §2): `specversion`
 * "1.0"; non-empty `id`, `source` (URI-reference) and `type`; RFC 3339 `time`;
 * absolute-URI `dataschema`; not both `data` and `data_base64`; extension names
 * `[a-z0-9]{1,20}` with scalar values.
 *
 * Written out rather than compiled from a JSON Schema because it runs on every
 * publish: ajv took 2.6 µs per event here, mostly in the URI-reference and
 * property-name checks; this takes a fraction of that. The formats themselves are
 * ajv-formats' own (full mode) for URIs, a character-level RFC 3339 parser for `time`,
 * and the URI checks of `source` and `dataschema`,
 * whose values repeat from event to event, are remembered per checker.
 */
export class EnvelopeChecker {
  readonly #uriReference = new Memo(formatTest(fullFormats['uri-reference']))
  readonly #uri = new Memo(formatTest(fullFormats.uri))

  /** Parse `payload` as JSON and check it is a CloudEvents 1.0 envelope (nested at most `MAX_JSON_DEPTH` levels). */
  check (payload: Buffer | string): EnvelopeResult {
    let parsed: unknown
    if (typeof payload === 'string') {
      try {
        parsed = JSON.parse(payload)
      } catch (err: unknown) {
        return { ok: false, reason: 'invalid_json', errors: [{ path: '', message: err instanceof Error ? err.message : String(err) }] }
      }
    } else {
      // parsed once: the plugins after validation (webhooks, dead letters) reuse it
      const json = parseJson(payload)
      if (!json.ok) return { ok: false, reason: 'invalid_json', errors: [{ path: '', message: json.error }] }
      parsed = json.value
    }
    // JSON.parse takes any depth; what comes after (the messages below, schemas, records) recurses
    if (mayNestDeeperThan(payload.length) && nestedDeeperThan(parsed)) return tooDeep('', MAX_JSON_DEPTH)
    return this.checkValue(parsed)
  }

  /**
   * Check an already parsed value (HTTP ingress parses JSON itself). The value must
   * nest no deeper than `MAX_JSON_DEPTH`, as `check` and the HTTP binding ensure: error
   * messages quote values with JSON.stringify, which recurses.
   */
  checkValue (value: unknown): EnvelopeResult {
    if (!isObject(value)) {
      return { ok: false, reason: 'invalid_cloudevent', errors: [{ path: '', message: `must be a JSON object, got ${shortJson(value)}` }] }
    }
    const errors: FieldError[] = []
    const fail = (path: string, message: string): void => { if (errors.length < MAX_ERRORS) errors.push({ path: `/${path}`, message }) }

    for (const name of REQUIRED) {
      const attribute = value[name]
      if (attribute === undefined) fail(name, 'is required')
      else if (typeof attribute !== 'string') fail(name, `must be string, got ${shortJson(attribute)}`)
      else if (attribute === '') fail(name, 'must NOT have fewer than 1 characters, got ""')
    }
    if (typeof value.specversion === 'string' && value.specversion !== '' && value.specversion !== '1.0') {
      fail('specversion', `must be equal to constant "1.0", got ${shortJson(value.specversion)}`)
    }
    if (typeof value.source === 'string' && value.source !== '' && !this.#uriReference.test(value.source)) {
      fail('source', `must match format "uri-reference", got ${shortJson(value.source)}`)
    }
    for (const name of OPTIONAL_STRINGS) {
      const attribute = value[name]
      if (attribute !== undefined && (typeof attribute !== 'string' || attribute === '')) fail(name, `must be a non-empty string, got ${shortJson(attribute)}`)
    }
    this.#checkFormat(value.time, 'time', 'date-time', isRfc3339, fail)
    this.#checkFormat(value.dataschema, 'dataschema', 'uri', (s) => this.#uri.test(s), fail)
    if (value.data_base64 !== undefined) {
      if (value.data !== undefined) fail('data_base64', 'must not be present together with data')
      else if (typeof value.data_base64 !== 'string' || !BASE64.test(value.data_base64)) fail('data_base64', `must be base64, got ${shortJson(value.data_base64)}`)
    }
    for (const name in value) {
      if (CONTEXT_ATTRIBUTES.has(name)) continue
      if (!EXTENSION_NAME.test(name)) {
        fail(name, 'is not a valid extension attribute name: use 1 to 20 lower-case letters and digits')
        continue
      }
      const extension = value[name]
      const kind = typeof extension
      if (kind !== 'string' && kind !== 'number' && kind !== 'boolean') fail(name, `must be string,number,boolean, got ${shortJson(extension)}`)
    }

    if (errors.length > 0 || !isEnvelope(value)) return { ok: false, reason: 'invalid_cloudevent', errors }
    return { ok: true, event: value }
  }

  #checkFormat (attribute: unknown, name: string, format: string, test: (value: string) => boolean, fail: (path: string, message: string) => void): void {
    if (attribute === undefined) return
    if (typeof attribute !== 'string') fail(name, `must be string, got ${shortJson(attribute)}`)
    else if (!test(attribute)) fail(name, `must match format "${format}", got ${shortJson(attribute)}`)
  }
}

/** Remembers the verdict of a pure string test for up to `URI_CACHE_SIZE` values, then starts over. */
class Memo {
  readonly #seen = new Map<string, boolean>()
  constructor (private readonly check: (value: string) => boolean) {}

  test (value: string): boolean {
    let verdict = this.#seen.get(value)
    if (verdict === undefined) {
      verdict = this.check(value)
      if (this.#seen.size >= URI_CACHE_SIZE) this.#seen.clear()
      this.#seen.set(value, verdict)
    }
    return verdict
  }
}

/** An ajv-formats format (a RegExp, a function or `{ validate }`) as a string test. */
function formatTest (format: Format): (value: string) => boolean {
  if (format instanceof RegExp) return (value) => format.test(value)
  if (typeof format === 'function') return (value) => format(value)
  if (typeof format === 'object' && format !== null && 'validate' in format) {
    const { validate } = format
    if (validate instanceof RegExp) return (value) => validate.test(value)
    // Reflect.apply: ajv types `validate` as string-or-number validators, ajv-formats' string formats take strings
    if (typeof validate === 'function') return (value) => Reflect.apply(validate, undefined, [value]) === true
  }
  if (format === true) return () => true
  throw new TypeError('unsupported ajv-formats format definition')
}

/** The type-level summary of the checks above (which already reported anything that fails here). */
function isEnvelope (value: Record<string, unknown>): value is CloudEvent {
  return value.specversion === '1.0' && typeof value.id === 'string' && typeof value.source === 'string' && typeof value.type === 'string'
}

/** The refusal of JSON nested deeper than `limit` levels: `invalid_json`, as JSON that cannot be read. */
export function tooDeep (path: string, limit: number): { readonly ok: false, readonly reason: 'invalid_json', readonly errors: readonly FieldError[] } {
  return { ok: false, reason: 'invalid_json', errors: [{ path, message: `JSON nested deeper than ${limit} levels` }] }
}

function isObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/**
 * ajv errors → `{ path, message }`, at most `MAX_ERRORS`, paths prefixed with `prefix`
 * (`/data` for schema errors). With `showValue` the message names the value received;
 * schema errors keep ajv's message as PRODUCT §3 shows it (`must be >= 1`), the record
 * carrying the whole payload beside them.
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
    case 'additionalProperties':
    case 'unevaluatedProperties':
      return { path: `${path}/${String(error.params.additionalProperty ?? error.params.unevaluatedProperty)}`, message: 'is not allowed' }
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
