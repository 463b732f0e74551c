import { createHash } from 'node:crypto'
import { signWebhook, webhookKey } from './signature.js'
import { propagatedTraceContext, type TraceCarrier } from '../../src/core/index.js'
import type { Subscription } from './subscriptions.js'

/** One HTTP request of a delivery: what is POSTed to the subscription's URL. */
export interface WebhookRequest {
  readonly headers: Record<string, string>
  readonly body: string | Uint8Array
}

/**
 * The Standard Webhooks `webhook-id` of an (event, subscription) pair: the same on every
 * attempt and every node, so a receiver can drop the copies at-least-once delivery makes.
 */
export function webhookId (subscriptionId: string, source: string, id: string): string {
  return `msg_${createHash('sha256').update(`${subscriptionId}\n${source}\n${id}`).digest('base64url').slice(0, 32)}`
}

/**
 * The request delivering `event` (a checked CloudEvent, `raw` its bytes as published)
 * in the CloudEvents HTTP binding. Binary mode (the default): `ce-*` headers
 * percent-encoded as §3.1.3.2 requires (`binaryMessage`), the content type from
 * `datacontenttype`, the body is `data`. Structured mode: the event's own bytes, as
 * `application/cloudevents+json`. With a secret, Standard Webhooks headers signed
 * over the body's bytes as sent (signature.ts). W3C Trace Context headers
 * continue the event's trace (PRODUCT §10): `trace` when tracing is on (the attempt's
 * span); off, the event's own `traceparent` and `tracestate` when valid, as published
 * (`ce-traceparent` and the structured attribute stay as published either way).
 * Throws a `TypeError` naming the attribute when binary mode cannot carry the event.
 */
export function buildRequest (event: Record<string, unknown>, raw: Buffer, subscription: Subscription, id: string, now: Date, trace?: TraceCarrier): WebhookRequest {
  let headers: Record<string, string>
  let body: string | Uint8Array
  if (subscription.mode === 'structured') {
    headers = { 'content-type': 'application/cloudevents+json; charset=utf-8' }
    body = raw
  } else {
    ({ headers, body } = binaryMessage(event))
  }
  const context = trace ?? propagatedTraceContext(event.traceparent, event.tracestate)
  if (context !== undefined) {
    headers.traceparent = context.traceparent
    if (context.tracestate !== undefined) headers.tracestate = context.tracestate
  }
  if (subscription.secret !== undefined) {
    const seconds = Math.floor(now.getTime() / 1000)
    headers['webhook-id'] = id
    headers['webhook-timestamp'] = String(seconds)
    headers['webhook-signature'] = signWebhook(keyOf(subscription, subscription.secret), id, seconds, body)
  }
  return { headers, body }
}

/** Attributes binary mode carries elsewhere than in a `ce-` header: Content-Type and the body (binding §3.1.1, §3.1.2). */
const NOT_HEADERS: ReadonlySet<string> = new Set(['datacontenttype', 'data', 'data_base64'])
/** CloudEvents attribute names (core spec §3.1.1); a `ce-` header of another name would not read back as the same attribute. */
const ATTRIBUTE_NAME = /^[a-z0-9]+$/
/** A field value as RFC 9110 §5.5 allows it and undici sends it unchanged: visible US-ASCII, space and tab. */
const FIELD_VALUE = /^[\t\x20-\x7e]*$/

/**
 * The event in binary content mode, written here rather than by the `cloudevents` SDK: the
 * SDK puts attribute values in headers as they are (no percent-encoding, so `%`, `"`,
 * non-ASCII and control characters are lost, garbled or refused), and refuses events it
 * should carry (a `schemaurl` extension on a 1.0 event). Every `ce-` value is the
 * attribute's canonical string, percent-encoded (`encodeHeaderValue`); `time` is sent as
 * published. `null` attributes are absent. The body: `data_base64` decoded, or `data` as
 * JSON when the content type is JSON (`application/json`, `+json`, or none given, when
 * Content-Type says `application/json`), a string as it is otherwise; no data, no body.
 * Throws a `TypeError` naming the attribute for what binary mode cannot carry: a name that
 * is not `[a-z0-9]+`, a value that is an object or an array, a `datacontenttype` that is
 * not a valid header value, a lone UTF-16 surrogate. Structured mode carries all of these.
 */
export function binaryMessage (event: Record<string, unknown>): WebhookRequest {
  const headers: Record<string, string> = {}
  for (const [name, value] of Object.entries(event)) {
    if (NOT_HEADERS.has(name) || value === null || value === undefined) continue
    if (!ATTRIBUTE_NAME.test(name)) throw new TypeError(`attribute ${JSON.stringify(name)}: binary mode carries attributes named [a-z0-9]+ only (CloudEvents §3.1.1); use structured mode`)
    headers[`ce-${name}`] = encodedAttribute(name, value)
  }
  const { datacontenttype, data, data_base64: base64 } = event
  if (datacontenttype !== undefined && datacontenttype !== null && (typeof datacontenttype !== 'string' || !FIELD_VALUE.test(datacontenttype))) {
    throw new TypeError(`attribute "datacontenttype" must be a media type in printable ASCII to be the Content-Type header, got ${JSON.stringify(datacontenttype)}`)
  }
  const contentType = typeof datacontenttype === 'string' ? datacontenttype : undefined
  if (typeof base64 === 'string') {
    headers['content-type'] = contentType ?? 'application/octet-stream'
    return { headers, body: Buffer.from(base64, 'base64') }
  }
  if (data === undefined) {
    if (contentType !== undefined) headers['content-type'] = contentType
    return { headers, body: '' }
  }
  headers['content-type'] = contentType ?? 'application/json'
  const body = typeof data === 'string' && !isJsonMediaType(headers['content-type']) ? data : JSON.stringify(data)
  return { headers, body }
}

/**
 * A value as the CloudEvents HTTP binding §3.1.3.2 puts it in a header: its UTF-8 bytes,
 * each percent-encoded (`%XX`, upper-case hex) unless it is printable US-ASCII
 * (U+0021-U+007E) other than `"` and `%`; so space is `%20`, tab `%09`, `é` `%C3%A9`.
 * Throws a `TypeError` for a lone surrogate, which has no UTF-8 form.
 */
export function encodeHeaderValue (value: string): string {
  let out = ''
  let plainFrom = 0
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i)
    if (c >= 0x21 && c <= 0x7e && c !== 0x22 && c !== 0x25) continue
    out += value.slice(plainFrom, i)
    let end = i + 1
    if (c >= 0xd800 && c <= 0xdbff && isLowSurrogate(value.charCodeAt(i + 1))) end = i + 2
    else if (c >= 0xd800 && c <= 0xdfff) throw new TypeError(`has a lone UTF-16 surrogate (\\u${c.toString(16)}) at index ${i}: not Unicode text`)
    for (const byte of Buffer.from(value.slice(i, end), 'utf8')) out += BYTE_ESCAPES[byte] ?? ''
    i = end - 1
    plainFrom = end
  }
  return plainFrom === 0 ? value : out + value.slice(plainFrom)
}

/** `%00` … `%FF`. */
const BYTE_ESCAPES: readonly string[] = Array.from({ length: 256 }, (_, b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`)

function isLowSurrogate (c: number): boolean {
  return c >= 0xdc00 && c <= 0xdfff
}

/**
 * The header value of an attribute: its canonical string (core spec §3.1.1 type system:
 * strings as they are, integers in decimal, booleans `true`/`false`), percent-encoded.
 */
function encodedAttribute (name: string, value: unknown): string {
  let text: string
  if (typeof value === 'string') text = value
  else if (typeof value === 'number' || typeof value === 'boolean') text = String(value)
  else throw new TypeError(`attribute ${JSON.stringify(name)} is ${Array.isArray(value) ? 'an array' : typeof value === 'object' ? 'an object' : `a ${typeof value}`}: binary mode carries string, number and boolean attributes only; use structured mode`)
  try {
    return encodeHeaderValue(text)
  } catch (err: unknown) {
    // the same TypeError, naming the attribute
    throw new TypeError(`attribute ${JSON.stringify(name)} ${err instanceof Error ? err.message : String(err)}`)
  }
}

/** `application/json`, `text/json` and every `+json` type, parameters ignored (RFC 6839). */
function isJsonMediaType (contentType: string | undefined): boolean {
  if (contentType === undefined) return true
  const type = (contentType.split(';')[0] ?? '').trim().toLowerCase()
  return type === 'application/json' || type === 'text/json' || type.endsWith('+json')
}

/** One key per subscription object (an update makes a new object): decoding the secret is not per request. */
const keys = new WeakMap<Subscription, Buffer>()

function keyOf (subscription: Subscription, secret: string): Buffer {
  let key = keys.get(subscription)
  if (key === undefined) {
    key = webhookKey(secret)
    keys.set(subscription, key)
  }
  return key
}

/** RFC 9110 §5.1 field names: tokens. */
const FIELD_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

/**
 * Why `headers` cannot go on the wire as they are, or `undefined` when they can: a name
 * that is not a token, or a value with a character outside visible US-ASCII, space and tab.
 * undici refuses the first kind and characters above U+00FF, and sends U+0080-U+00FF as
 * single Latin-1 bytes; checked before undici sees them, because undici 7 leaves a pool
 * slot taken for every request it refuses (see `Deliverer`). Values are not quoted back:
 * they may be large, or secret.
 */
export function headersProblem (headers: Readonly<Record<string, string>>): string | undefined {
  for (const [name, value] of Object.entries(headers)) {
    if (!FIELD_NAME.test(name)) return `header name ${JSON.stringify(name.slice(0, 40))} is not an HTTP token`
    if (FIELD_VALUE.test(value)) continue
    const at = value.search(/[^\t\x20-\x7e]/)
    return `header ${name} has U+${(value.codePointAt(at) ?? 0).toString(16).toUpperCase().padStart(4, '0')} at index ${at}, outside visible US-ASCII`
  }
  return undefined
}
