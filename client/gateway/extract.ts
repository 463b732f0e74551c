import { buildEvent, typeProblem, type CloudEventJson } from '../event.js'

/** The header a backend lists its events in, as a JSON array (lower case, as Node keeps header names). */
export const EVENTS_HEADER = 'x-cloudevents'

/** A header's value as Node's `getHeader` and `getHeaders` give it. */
export type HeaderValue = string | number | readonly string[] | undefined

/** What could not be read from a response: counted and logged under its outcome, never failing the response. */
export interface Problem {
  readonly outcome: 'malformed' | 'oversized'
  readonly detail: string
}

/** The bounds on what is parsed of one response. */
export interface ExtractLimits {
  /** The `X-CloudEvents` header's size past which it is not parsed (it is still removed). */
  readonly maxHeaderBytes: number
  /** A JSON body's size past which it is not parsed (it is sent on as it is). */
  readonly maxBodyBytes: number
}

/** The entries a response carried and the body to send on in its place. */
export interface BodyEvents<B> {
  /** The `events` array as the backend wrote it: checked one by one later. */
  readonly entries: readonly unknown[]
  /** The body without `events`; `data` and every other key kept. */
  readonly body: B
}

/**
 * The `X-CloudEvents` header's entries. A header that is no JSON array, or past
 * `maxHeaderBytes`, yields none and a problem; either way the caller removes it, as the
 * header is this convention's by name.
 */
export function readHeader (value: HeaderValue, limits: ExtractLimits): { entries: unknown[], problems: Problem[] } {
  if (value === undefined) return { entries: [], problems: [] }
  const values = typeof value === 'object' ? value : [String(value)]
  const bytes = values.reduce((sum, v) => sum + Buffer.byteLength(v), 0)
  if (bytes > limits.maxHeaderBytes) {
    return { entries: [], problems: [{ outcome: 'oversized', detail: `X-CloudEvents header of ${bytes} bytes, past maxHeaderBytes (${limits.maxHeaderBytes}): not parsed` }] }
  }
  const entries: unknown[] = []
  const problems: Problem[] = []
  for (const text of values) {
    const parsed = parseJson(text)
    if (Array.isArray(parsed)) entries.push(...parsed)
    else problems.push({ outcome: 'malformed', detail: `X-CloudEvents header is no JSON array: ${preview(text)}` })
  }
  return { entries, problems }
}

/** Whether a `Content-Type` says JSON: `application/json`, `application/problem+json`, with or without parameters. */
export function isJsonType (contentType: HeaderValue): boolean {
  return typeof contentType === 'string' && /^[\w.-]+\/(?:[\w.-]+\+)?json\s*(?:;|$)/i.test(contentType)
}

/**
 * A parsed body's events: a plain object with a `data` key and an `events` array beside
 * it. Anything else is no body of this convention and yields undefined (left as it is):
 * an API whose own payload has an `events` list, without `data` beside it, keeps it.
 */
export function readBodyObject (body: unknown): BodyEvents<Record<string, unknown>> | undefined {
  if (!isPlainObject(body) || !Object.hasOwn(body, 'data') || !Array.isArray(body.events)) return undefined
  const { events, ...rest } = body
  return { entries: events as unknown[], body: rest }
}

/**
 * A JSON text body's events, and the body re-serialized without them. A body that does
 * not mention `"events"` is not parsed at all; one past `maxBodyBytes` is not parsed and
 * reported; one that is no JSON is sent on as it is (it is the backend's answer, not ours).
 */
export function readBodyText (text: string | Buffer, limits: ExtractLimits): { found?: BodyEvents<string>, problem?: Problem } {
  if (!text.includes('"events"')) return {}
  const bytes = typeof text === 'string' ? Buffer.byteLength(text) : text.length
  if (bytes > limits.maxBodyBytes) {
    return { problem: { outcome: 'oversized', detail: `JSON body of ${bytes} bytes, past maxBodyBytes (${limits.maxBodyBytes}): not parsed, sent on with its events` } }
  }
  const found = readBodyObject(parseJson(typeof text === 'string' ? text : text.toString('utf8')))
  return found === undefined ? {} : { found: { entries: found.entries, body: JSON.stringify(found.body) } }
}

/** What `extractEvents` found in a response and what to send on instead. */
export interface Extracted<B> {
  /** The entries, the header's first, not checked yet: the interceptor turns each into an event or counts it malformed. */
  readonly entries: readonly unknown[]
  /** The headers without `X-CloudEvents`, with `Content-Length` fixed when the body changed. */
  readonly headers: Record<string, HeaderValue>
  /** The body without `events`; the same value when it had none. */
  readonly body: unknown
  readonly problems: readonly Problem[]
}

/**
 * A response's events from its `X-CloudEvents` header and its body's `events` beside
 * `data`; `body` is either a parsed value or the JSON text (string or Buffer, read when
 * `Content-Type` says JSON). Pure: what a framework the library does not cover needs to
 * build its own interceptor.
 */
export function extractEvents (headers: Readonly<Record<string, HeaderValue>>, body: unknown, limits: ExtractLimits = DEFAULT_LIMITS): Extracted<unknown> {
  const out: Record<string, HeaderValue> = {}
  let header: HeaderValue
  let contentType: HeaderValue
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase()
    if (lower === EVENTS_HEADER) header = value
    else out[name] = value
    if (lower === 'content-type') contentType = value
  }
  const { entries, problems } = readHeader(header, limits)
  if (typeof body === 'string' || Buffer.isBuffer(body)) {
    if (!isJsonType(contentType)) return { entries, headers: out, body, problems }
    const { found, problem } = readBodyText(body, limits)
    if (problem !== undefined) problems.push(problem)
    if (found === undefined) return { entries, headers: out, body, problems }
    for (const name of Object.keys(out)) {
      if (name.toLowerCase() === 'content-length') out[name] = String(Buffer.byteLength(found.body))
    }
    return { entries: [...entries, ...found.entries], headers: out, body: found.body, problems }
  }
  const found = readBodyObject(body)
  if (found === undefined) return { entries, headers: out, body, problems }
  return { entries: [...entries, ...found.entries], headers: out, body: found.body, problems }
}

export const DEFAULT_LIMITS: ExtractLimits = Object.freeze({ maxHeaderBytes: 65_536, maxBodyBytes: 1_048_576 })

/**
 * One entry as the event to publish, or why it is none. An entry with `specversion` is a
 * complete CloudEvent, published as it is (the broker checks the rest of its envelope);
 * any other is `{ type, data, subject?, id?, time? }`, built with the publisher's source
 * and dataschemas and the active span's trace context.
 */
export function toEvent (entry: unknown, source: string, dataschemas: Readonly<Record<string, string>>): CloudEventJson | string {
  if (!isPlainObject(entry)) return `event entry is no object: ${preview(entry)}`
  const type = entry.type
  if (typeof type !== 'string' || type === '') return `event entry's "type" is ${preview(type)}, not a non-empty string`
  const problem = typeProblem(type)
  if (problem !== undefined) return `event entry's "type" ${preview(type)} ${problem}`
  if (Object.hasOwn(entry, 'specversion')) {
    for (const attribute of ['specversion', 'id', 'source']) {
      const value = entry[attribute]
      if (typeof value !== 'string' || value === '') return `complete CloudEvent of type ${preview(type)}: "${attribute}" is ${preview(value)}, not a non-empty string`
    }
    // the broker checks the rest of the envelope and refuses what is wrong, with its reason
    return entry as unknown as CloudEventJson
  }
  const options: { id?: string, subject?: string, time?: string } = {}
  for (const attribute of ['id', 'subject', 'time'] as const) {
    const value = entry[attribute]
    if (value === undefined) continue
    if (typeof value !== 'string' || value === '') return `event of type ${preview(type)}: "${attribute}" is ${preview(value)}, not a non-empty string`
    options[attribute] = value
  }
  return buildEvent(type, entry.data, source, dataschemas, options)
}

function isPlainObject (value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false
  const prototype: unknown = Object.getPrototypeOf(value)
  return prototype === Object.prototype || prototype === null
}

function parseJson (text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/** A value as a log line shows it: JSON, cut at 80 characters. */
function preview (value: unknown): string {
  const text = value === undefined ? 'undefined' : typeof value === 'string' ? JSON.stringify(value) : safeStringify(value)
  return text.length > 80 ? `${text.slice(0, 77)}...` : text
}

function safeStringify (value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}
