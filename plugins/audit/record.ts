import { MAX_VIEW_DEPTH, nestingDepth, type EventSummary, type PublishAttempt, type PublishVerdict } from '../../src/core/index.js'

/** What happened to an audited publish (PRODUCT §3); `would_reject`: accepted, though its type's schema (in shadow mode) refused it. */
export type AuditOutcome = 'accepted' | 'rejected' | 'duplicate' | 'would_reject'

/** The audit record of PRODUCT §3, as written to `$audit/<topic>` and the audit log. */
export interface AuditRecord {
  readonly at: string
  readonly node: string
  readonly outcome: AuditOutcome
  readonly reason?: string
  readonly clientId: string | null
  /** Who the client authenticated as, when it did. */
  readonly username?: string
  readonly topic: string
  readonly qos: 0 | 1 | 2
  readonly retain: boolean
  readonly event: Pick<EventSummary, 'id' | 'type' | 'source' | 'time' | 'schemaVersion'>
  /**
   * What is wrong with the event's trace context (`traceparent`, `tracestate`), when
   * something is: `malformed traceparent: trace-id is all zeros`. The event's outcome is
   * the same; its trace context is not continued (no parent span, no HTTP header).
   */
  readonly trace?: string
  /** What the schema found, for `would_reject`. */
  readonly errors?: ReadonlyArray<{ readonly path: string, readonly message: string }>
  /** The event as published (redacted), when `audit.payload` is on and it was JSON. */
  readonly payload?: unknown
  /** The bytes as published, when they were not JSON. */
  readonly payloadBase64?: string
}

export const REDACTED = '[redacted]'

/**
 * The refusals audited, by code: an event refused or a duplicate, and a publish the ACL
 * refuses (refused before anything read it, so on any topic). A `$` topic's refusal is
 * not about an event, and a plugin's fault is no verdict on one.
 */
const AUDITED: ReadonlyMap<string, Exclude<AuditOutcome, 'accepted' | 'would_reject'>> = new Map([
  ['BRK_EVENT_REJECTED', 'rejected'],
  ['BRK_PUBLISH_NOT_AUTHORIZED', 'rejected'],
  ['BRK_EVENT_DUPLICATE', 'duplicate']
])

/**
 * The audited outcome of a verdict, or `undefined` for a publish that is not audited:
 * accepted publishes that carry no described event (topics that are not validated) and
 * refusals that are not about the event (a `$` topic). A publish the ACL refuses is
 * audited on any topic: it was refused before anything read it.
 */
export function outcomeOf (attempt: PublishAttempt, verdict: PublishVerdict): { outcome: AuditOutcome, reason?: string, event: EventSummary } | undefined {
  if (verdict === undefined) {
    const event = attempt.event
    if (event === undefined) return undefined
    return event.shadow === undefined ? { outcome: 'accepted', event } : { outcome: 'would_reject', reason: event.shadow.reason, event }
  }
  const outcome = AUDITED.get(verdict.code)
  if (outcome === undefined) return undefined
  const event = attempt.event ?? verdict.event ?? {}
  return outcome === 'duplicate' ? { outcome, event } : { outcome, reason: verdict.reason, event }
}

/** Replaces values at dotted paths (`data.email`, `data.guests.*.email`) with "[redacted]", in place. */
export type Redactor = (value: unknown) => void

export function compileRedactor (paths: readonly string[]): Redactor | undefined {
  if (paths.length === 0) return undefined
  const split = paths.map((path) => path.split('.'))
  return function redact (value: unknown): void {
    for (const segments of split) redactAt(value, segments, 0)
  }
}

function redactAt (node: unknown, segments: readonly string[], depth: number): void {
  if (typeof node !== 'object' || node === null) return
  const segment = segments[depth]
  if (segment === undefined) return
  const last = depth === segments.length - 1
  const keys = segment === '*' ? Object.keys(node) : [segment]
  for (const key of keys) {
    if (!Object.hasOwn(node, key)) continue
    if (last) Reflect.set(node, key, REDACTED)
    else redactAt(Reflect.get(node, key), segments, depth + 1)
  }
}

export interface RecordOptions {
  readonly node: string
  readonly payload: boolean
  readonly redact: Redactor | undefined
}

/** The JSON lines appended since the last `take()`. */
export interface RecordBatch {
  /** Whole lines, each ending in a line break: write them in order. */
  readonly chunks: readonly Buffer[]
  /** How many records they hold. */
  readonly count: number
}

/** Bytes of one slab: records are written one after another into it, about 700 of 1.4 KiB each. */
const SLAB_BYTES = 1024 * 1024
/** Printable ASCII without `"` and `\`: a string of these needs no escaping in JSON. */
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/
const PAYLOAD_KEY = ',"payload":'

/**
 * Serializes audit records as JSON lines, straight into large slabs: no buffer per
 * record, no copy to join a batch. Made once per broker; it caches what repeats from
 * record to record.
 */
export class RecordWriter {
  readonly #options: RecordOptions
  readonly #nodeJson: string
  /** The ISO time of the millisecond `#clockMs`: under load, thousands of records share one. */
  #clockMs = -1
  #clockIso = ''
  #slab = Buffer.alloc(0)
  /** Where the next record goes in the slab. */
  #at = 0
  /** The first byte of the slab not yet taken. */
  #from = 0
  /** Untaken lines of slabs already full. */
  #full: Buffer[] = []
  #count = 0
  /** Whether the head of the record being written is all ASCII (written as latin1, the faster copy). */
  #ascii = true

  constructor (options: RecordOptions) {
    this.#options = options
    this.#nodeJson = JSON.stringify(options.node)
  }

  /**
   * Append the record of one audited publish, as one line of JSON; returns the record's
   * bytes (without the line break) when `keep`, for the live mirror. On the hot path
   * (the event was parsed by validation already, nothing to redact) the payload's own
   * bytes are copied in after the record's head instead of being parsed and serialized
   * again; only a payload with line breaks, which would split the line, or one to
   * redact, is re-serialized.
   */
  append (attempt: PublishAttempt, audited: NonNullable<ReturnType<typeof outcomeOf>>, keep: boolean): Buffer | undefined {
    const { redact } = this.#options
    let event = audited.event
    if (redact !== undefined) {
      event = { ...event }
      redact(event)
    }
    this.#ascii = true
    let text = `{"at":"${this.#now()}","node":${this.#nodeJson},"outcome":"${audited.outcome}"`
    if (audited.reason !== undefined) text += `,"reason":${this.#quote(audited.reason)}`
    text += `,"clientId":${attempt.clientId === null ? 'null' : this.#quote(attempt.clientId)}`
    if (attempt.identity !== undefined) text += `,"username":${this.#quote(attempt.identity.username)}`
    text += `,"topic":${this.#quote(attempt.topic)}` +
      `,"qos":${attempt.qos},"retain":${attempt.retain ? 'true' : 'false'},"event":{`
    let first = true
    for (const key of EVENT_FIELDS) {
      const value = event[key]
      if (value === undefined) continue
      text += `${first ? '' : ','}"${key}":${this.#quote(value)}`
      first = false
    }
    if (event.schemaVersion !== undefined) text += `${first ? '' : ','}"schemaVersion":${event.schemaVersion}`
    text += '}'
    if (event.traceProblem !== undefined) text += `,"trace":${this.#quote(event.traceProblem)}`
    if (event.shadow !== undefined) {
      // rare (a shadow-mode failure): written as UTF-8 whatever it holds
      text += `,"errors":${JSON.stringify(event.shadow.problems)}`
      this.#ascii = false
    }

    const bytes = attempt.payload
    let raw: Buffer | undefined
    let tail = '}'
    if (this.#options.payload && bytes.length > 0) {
      const parsedAlready = audited.outcome !== 'rejected' || attempt.event !== undefined
      if (parsedAlready && redact === undefined && bytes.indexOf(10) === -1 && bytes.indexOf(13) === -1) raw = bytes
      else tail = this.#reserialized(bytes, redact)
    }
    const tailAscii = tail === '}'
    // room for the worst case: three UTF-8 bytes per UTF-16 unit outside ASCII
    const room = text.length * (this.#ascii ? 1 : 3) + tail.length * (tailAscii ? 1 : 3) +
      (raw === undefined ? 0 : PAYLOAD_KEY.length + raw.length) + 1
    this.#reserve(room)
    const slab = this.#slab
    const begin = this.#at
    let at = begin + slab.write(text, begin, this.#ascii ? 'latin1' : 'utf8')
    if (raw !== undefined) {
      at += slab.write(PAYLOAD_KEY, at, 'latin1')
      at += raw.copy(slab, at)
    }
    at += slab.write(tail, at, tailAscii ? 'latin1' : 'utf8')
    slab[at] = 0x0a
    this.#at = at + 1
    this.#count++
    return keep ? slab.subarray(begin, at) : undefined
  }

  /** Append a record that is not about a publish (a refused login), as one line of JSON; returns its bytes when `keep`. */
  appendValue (value: Readonly<Record<string, unknown>>, keep: boolean): Buffer | undefined {
    const text = JSON.stringify({ at: this.#now(), node: this.#options.node, ...value })
    this.#reserve(text.length * 3 + 1)
    const begin = this.#at
    const at = begin + this.#slab.write(text, begin, 'utf8')
    this.#slab[at] = 0x0a
    this.#at = at + 1
    this.#count++
    return keep ? this.#slab.subarray(begin, at) : undefined
  }

  /** The lines appended since the last call. */
  take (): RecordBatch {
    const chunks = this.#full
    if (this.#at > this.#from) chunks.push(this.#slab.subarray(this.#from, this.#at))
    const batch = { chunks, count: this.#count }
    this.#full = []
    this.#from = this.#at
    this.#count = 0
    return batch
  }

  /** Make room for `bytes` more in the slab, starting a new one when it is full. */
  #reserve (bytes: number): void {
    if (this.#at + bytes <= this.#slab.length) return
    if (this.#at > this.#from) this.#full.push(this.#slab.subarray(this.#from, this.#at))
    this.#slab = Buffer.allocUnsafe(Math.max(SLAB_BYTES, bytes))
    this.#at = 0
    this.#from = 0
  }

  /** The payload member of a record whose payload must be parsed (to redact it, or to drop its line breaks). */
  #reserialized (bytes: Buffer, redact: Redactor | undefined): string {
    let payload: unknown
    // too deep to serialize again: kept as bytes, as a payload that is not JSON is
    if (nestingDepth(bytes) > MAX_VIEW_DEPTH) return `,"payloadBase64":"${bytes.toString('base64')}"}`
    try {
      payload = JSON.parse(bytes.toString('utf8'))
    } catch {
      return `,"payloadBase64":"${bytes.toString('base64')}"}`
    }
    redact?.(payload)
    return `${PAYLOAD_KEY}${JSON.stringify(payload)}}`
  }

  /** `value` as a JSON string; clears `#ascii` when it may hold more than ASCII. */
  #quote (value: string): string {
    if (PLAIN.test(value)) return `"${value}"`
    this.#ascii = false
    return JSON.stringify(value)
  }

  #now (): string {
    const ms = Date.now()
    if (ms !== this.#clockMs) {
      this.#clockMs = ms
      this.#clockIso = new Date(ms).toISOString()
    }
    return this.#clockIso
  }
}

/** The event attributes a record names, in this order. */
const EVENT_FIELDS = ['id', 'type', 'source', 'time'] as const
