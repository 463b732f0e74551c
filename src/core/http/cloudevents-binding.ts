import { tooDeep, type EnvelopeReason, type FieldError } from '../cloudevents/envelope.js'
import { MAX_JSON_DEPTH, mayNestDeeperThan, nestedDeeperThan } from '../payload.js'

/**
 * Reads a request in the CloudEvents HTTP protocol binding 1.0 (binary, structured or
 * batched content mode) into structured-mode event objects, exactly as sent, for the
 * envelope check. Unlike the cloudevents SDK's `HTTP.toEvent`, nothing is filled in or
 * repaired: a missing `id`, `time` or `specversion` stays missing and a bad `ce-time`
 * stays as it was, so that `EnvelopeChecker.checkValue` reports it. Pure: no I/O, no fastify.
 */

/** The content mode, decided by the `Content-Type` header alone (binding §3). */
export type BindingMode = 'binary' | 'structured' | 'batch'

/** One event of the request: the structured-mode object to check, or why it could not even be read. */
export type BoundEvent =
  | { readonly ok: true, readonly event: Record<string, unknown> }
  | { readonly ok: false, readonly reason: EnvelopeReason, readonly errors: readonly FieldError[] }

/**
 * The events of one request, in body order. Error paths are JSON pointers into the event
 * (batch index not included). A body that cannot be read at all (not JSON, or a batch
 * that is not an array) gives exactly one failed entry with path `""`.
 */
export interface BoundRequest {
  readonly mode: BindingMode
  readonly events: readonly BoundEvent[]
}

/** Request headers as node gives them: names lower-case, values string (string[] only for repeated fields). */
export type HttpHeaders = Readonly<Record<string, string | string[] | undefined>>

const STRUCTURED_JSON = 'application/cloudevents+json'
const BATCH_JSON = 'application/cloudevents-batch+json'
const HEADER_PREFIX = 'ce-'
/** Attributes that binary mode carries elsewhere: `Content-Type` (§3.1.1) and the body (§3.1.2). */
const NOT_FROM_HEADERS: ReadonlyMap<string, string> = new Map([
  ['datacontenttype', 'is carried by the Content-Type header in binary mode, not by ce-datacontenttype'],
  ['data', 'is carried by the request body in binary mode, not by a ce-data header'],
  ['data_base64', 'is carried by the request body in binary mode, not by a ce-data_base64 header']
])

/**
 * Convert one HTTP request to structured-mode CloudEvents.
 * @param headers request headers (names are matched case-insensitively)
 * @param body the raw request body
 */
export function fromHttp (headers: HttpHeaders, body: Buffer): BoundRequest {
  const fields = collectFields(headers)
  // node keeps only the first of repeated Content-Type fields; so do we.
  const contentType = fields.get('content-type')?.[0]
  const mediaType = contentType === undefined ? undefined : mediaTypeOf(contentType)
  // Exact media type, parameters ignored, case-insensitive (RFC 2045 §5.1). Other
  // `application/cloudevents+<format>` types fall through to binary, as §3 allows.
  if (mediaType === STRUCTURED_JSON) return { mode: 'structured', events: [readStructured(body)] }
  if (mediaType === BATCH_JSON) return { mode: 'batch', events: readBatch(body) }
  return { mode: 'binary', events: [readBinary(fields, contentType, mediaType, body)] }
}

function readStructured (body: Buffer): BoundEvent {
  const parsed = parseJson(body, '', MAX_JSON_DEPTH)
  if (!parsed.ok) return parsed.failure
  if (isRecord(parsed.value)) return { ok: true, event: parsed.value }
  const hint = Array.isArray(parsed.value) ? `; send several events as ${BATCH_JSON}` : ''
  return invalid('', `the body of a structured-mode event (${STRUCTURED_JSON}) must be one JSON object, got ${kindOf(parsed.value)}${hint}`)
}

function readBatch (body: Buffer): BoundEvent[] {
  // the array is one level: each event in it may nest MAX_JSON_DEPTH
  const parsed = parseJson(body, '', MAX_JSON_DEPTH + 1)
  if (!parsed.ok) return [parsed.failure]
  if (!Array.isArray(parsed.value)) {
    return [invalid('', `the body of a batch (${BATCH_JSON}) must be a JSON array of events, got ${kindOf(parsed.value)}`)]
  }
  const items: readonly unknown[] = parsed.value
  return items.map((item): BoundEvent => isRecord(item)
    ? { ok: true, event: item }
    : invalid('', `each event of a batch must be a JSON object, got ${kindOf(item)}`))
}

function readBinary (fields: ReadonlyMap<string, readonly string[]>, contentType: string | undefined, mediaType: string | undefined, body: Buffer): BoundEvent {
  // Data first: PRODUCT §2 lists invalid_json before invalid_cloudevent.
  const data = readData(contentType, mediaType, body)
  if (data !== undefined && !data.ok) return data.failure
  const misdirected = structuredInBinary(fields, contentType, data, body)
  if (misdirected !== undefined) return misdirected

  // Entries then Object.fromEntries: a `ce-__proto__` header becomes an own property
  // (which the envelope check refuses as a name) instead of touching the prototype.
  const entries: Array<[string, unknown]> = []
  const errors: FieldError[] = []
  for (const [name, values] of fields) {
    if (!name.startsWith(HEADER_PREFIX)) continue
    const attribute = name.slice(HEADER_PREFIX.length)
    const path = `/${attribute.replace(/~/g, '~0').replace(/\//g, '~1')}`
    const misplaced = NOT_FROM_HEADERS.get(attribute)
    const [value, ...more] = values
    if (misplaced !== undefined) {
      errors.push({ path, message: misplaced })
    } else if (value === undefined || more.length > 0) {
      errors.push({ path, message: `is sent in ${values.length} ${name} headers, an attribute has one value` })
    } else {
      const decoded = decodeHeaderValue(value)
      if (decoded.ok) entries.push([attribute, decoded.value])
      else errors.push({ path, message: `${decoded.message}, got ${shortJson(value)}` })
    }
  }
  if (errors.length > 0) return { ok: false, reason: 'invalid_cloudevent', errors }
  // Content-Type is a media type, not an attribute header: copied verbatim, no percent-decoding
  // (unquoting would change parameters such as boundary="a b").
  if (contentType !== undefined) entries.push(['datacontenttype', contentType])
  if (data !== undefined) entries.push([data.name, data.value])
  return { ok: true, event: Object.fromEntries(entries) }
}

/**
 * A structured-mode event sent without its media type (`curl -H 'content-type:
 * application/json' -d '{"specversion":"1.0",...}'`) reads as a binary-mode event with no
 * attributes; the envelope check would then answer `/specversion is required`, which hides
 * the mistake. When there is no `ce-specversion` header and the body is a JSON object with
 * `specversion`, or with `id`, `source` and `type`, say so instead.
 */
function structuredInBinary (fields: ReadonlyMap<string, readonly string[]>, contentType: string | undefined, data: DataResult | undefined, body: Buffer): BoundEvent | undefined {
  if (fields.has(`${HEADER_PREFIX}specversion`) || data === undefined || !data.ok) return undefined
  let value = data.name === 'data' ? data.value : undefined
  if (typeof value === 'string' || data.name === 'data_base64') {
    // read as text or bytes (another Content-Type, or none): it may still be JSON
    const parsed = parseJson(body, '', MAX_JSON_DEPTH)
    value = parsed.ok ? parsed.value : undefined
  }
  if (!isRecord(value) || !('specversion' in value || ('id' in value && 'source' in value && 'type' in value))) return undefined
  const sent = contentType === undefined ? 'no Content-Type' : `Content-Type ${shortJson(contentType)}`
  return invalid('', `has no ce-specversion header but a JSON body that looks like a structured-mode event: send it with Content-Type: ${STRUCTURED_JSON} (with ${sent} the request is read in binary mode, where attributes are ce-* headers and the body is the data)`)
}

type DataResult =
  | { readonly ok: true, readonly name: 'data' | 'data_base64', readonly value: unknown }
  | { readonly ok: false, readonly failure: BoundEvent }

/**
 * The body as the event's data, as the JSON event format would carry it: JSON types
 * (`application/json`, `*+json`) as parsed JSON, UTF-8 text as a string, everything else
 * (other charsets, bytes that are not UTF-8, no Content-Type) as `data_base64` so the
 * bytes survive unchanged. An empty body is no data.
 */
function readData (contentType: string | undefined, mediaType: string | undefined, body: Buffer): DataResult | undefined {
  if (body.length === 0) return undefined
  if (mediaType !== undefined && (mediaType === 'application/json' || mediaType.endsWith('+json'))) {
    // the event around the data is one level: the structured event may nest MAX_JSON_DEPTH
    const parsed = parseJson(body, '/data', MAX_JSON_DEPTH - 1)
    return parsed.ok ? { ok: true, name: 'data', value: parsed.value } : parsed
  }
  if (contentType !== undefined && mediaType !== undefined && mediaType.startsWith('text/')) {
    const charset = charsetOf(contentType)
    const text = charset === undefined || charset === 'utf-8' || charset === 'us-ascii' ? decodeUtf8(body, false) : undefined
    if (text !== undefined) return { ok: true, name: 'data', value: text }
  }
  return { ok: true, name: 'data_base64', value: body.toString('base64') }
}

type JsonResult = { readonly ok: true, readonly value: unknown } | { readonly ok: false, readonly failure: BoundEvent }

/**
 * JSON text must be UTF-8 (RFC 8259 §8.1); a leading BOM is ignored, as that section allows.
 * Text nested deeper than `maxDepth` is refused like broken JSON: the routes serialize
 * the event again, and JSON.stringify recurses (see `MAX_JSON_DEPTH`).
 */
function parseJson (body: Buffer, path: string, maxDepth: number): JsonResult {
  const text = decodeUtf8(body, true)
  if (text === undefined) return { ok: false, failure: { ok: false, reason: 'invalid_json', errors: [{ path, message: 'is not valid UTF-8' }] } }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err: unknown) {
    // Not a fault of ours: the sender's JSON is broken, which is a result, not an exception.
    const detail = err instanceof Error ? err.message : String(err)
    return { ok: false, failure: { ok: false, reason: 'invalid_json', errors: [{ path, message: `is not valid JSON: ${detail}` }] } }
  }
  if (mayNestDeeperThan(text.length, maxDepth) && nestedDeeperThan(value, maxDepth)) return { ok: false, failure: tooDeep(path, maxDepth) }
  return { ok: true, value }
}

/** Strict UTF-8 decoding: `undefined` for malformed bytes instead of U+FFFD replacements. */
function decodeUtf8 (bytes: Buffer, stripBom: boolean): string | undefined {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: !stripBom }).decode(bytes)
  } catch (err: unknown) {
    // fatal: true throws a TypeError on malformed input; that answer is all we need.
    if (err instanceof TypeError) return undefined
    throw err
  }
}

type Decoded = { readonly ok: true, readonly value: string } | { readonly ok: false, readonly message: string }

/**
 * Binding §3.1.3.2: unescape RFC 7230 quoted-strings (older senders), then one round of
 * percent-decoding whose bytes must be valid UTF-8 (overlong forms such as %C0%A0 refused).
 * Raw characters outside printable ASCII (and space) must have been percent-encoded.
 */
function decodeHeaderValue (raw: string): Decoded {
  if (!/^[\x20-\x7e]*$/.test(raw)) return { ok: false, message: 'has characters outside printable ASCII that must be percent-encoded (CloudEvents HTTP binding §3.1.3.2)' }
  const unquoted = raw.includes('"') ? unquote(raw) : raw
  if (unquoted === undefined) return { ok: false, message: 'has an unterminated quoted string' }
  if (!unquoted.includes('%')) return { ok: true, value: unquoted }
  try {
    // decodeURIComponent is exactly one round of %XX decoding with strict UTF-8 (ECMA-262 Decode);
    // it leaves `+` alone, unlike form decoding.
    return { ok: true, value: decodeURIComponent(unquoted) }
  } catch (err: unknown) {
    if (!(err instanceof URIError)) throw err
    return { ok: false, message: 'is not valid percent-encoded UTF-8 (CloudEvents HTTP binding §3.1.3.2)' }
  }
}

/** Remove the quotes and backslash escapes of every quoted-string in `raw`; `undefined` if one is unterminated. */
function unquote (raw: string): string | undefined {
  let out = ''
  let quoted = false
  let escaped = false
  for (const ch of raw) {
    if (escaped) {
      out += ch
      escaped = false
    } else if (quoted && ch === '\\') {
      escaped = true
    } else if (ch === '"') {
      quoted = !quoted
    } else {
      out += ch
    }
  }
  return quoted ? undefined : out
}

/** Header values by lower-case name; repeated fields (string[] or names differing in case) keep every value. */
function collectFields (headers: HttpHeaders): Map<string, string[]> {
  const fields = new Map<string, string[]>()
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue
    const key = name.toLowerCase()
    const values = fields.get(key) ?? []
    for (const one of typeof value === 'string' ? [value] : value) values.push(trimOws(one))
    fields.set(key, values)
  }
  return fields
}

/** RFC 7230 §3.2: optional whitespace (space, tab) around a field value is not part of it. */
function trimOws (value: string): string {
  return value.replace(/^[ \t]+|[ \t]+$/g, '')
}

function mediaTypeOf (contentType: string): string {
  const semicolon = contentType.indexOf(';')
  return (semicolon === -1 ? contentType : contentType.slice(0, semicolon)).trim().toLowerCase()
}

function charsetOf (contentType: string): string | undefined {
  for (const parameter of contentType.split(';').slice(1)) {
    const equals = parameter.indexOf('=')
    if (equals === -1 || parameter.slice(0, equals).trim().toLowerCase() !== 'charset') continue
    return parameter.slice(equals + 1).trim().replace(/^"(.*)"$/, '$1').toLowerCase()
  }
  return undefined
}

function isRecord (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function invalid (path: string, message: string): BoundEvent {
  return { ok: false, reason: 'invalid_cloudevent', errors: [{ path, message }] }
}

function kindOf (value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  const type = typeof value
  return `${type === 'object' ? 'an' : 'a'} ${type} ${shortJson(value)}`
}

function shortJson (value: unknown): string {
  const text = JSON.stringify(value) ?? String(value)
  return text.length > 80 ? `${text.slice(0, 77)}...` : text
}
