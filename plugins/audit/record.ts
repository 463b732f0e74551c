import { DuplicateEventError, EventRejectedError, type EventSummary, type PublishAttempt, type PublishVerdict } from '../../src/index.js'

/** What happened to an audited publish (PRODUCT §3). */
export type AuditOutcome = 'accepted' | 'rejected' | 'duplicate'

/** The audit record of PRODUCT §3, as written to `$audit/<topic>` and the audit log. */
export interface AuditRecord {
  readonly at: string
  readonly node: string
  readonly outcome: AuditOutcome
  readonly reason?: string
  readonly clientId: string | null
  readonly topic: string
  readonly qos: 0 | 1 | 2
  readonly retain: boolean
  readonly event: Pick<EventSummary, 'id' | 'type' | 'source' | 'time'>
  /** The event as published (redacted), when `audit.payload` is on and it was JSON. */
  readonly payload?: unknown
  /** The bytes as published, when they were not JSON. */
  readonly payloadBase64?: string
}

export const REDACTED = '[redacted]'

/**
 * The audited outcome of a verdict, or `undefined` for a publish that is not audited:
 * accepted publishes that carry no described event (topics that are not validated) and
 * refusals that are not about the event (a `$` topic, an ACL).
 */
export function outcomeOf (attempt: PublishAttempt, verdict: PublishVerdict): { outcome: AuditOutcome, reason?: string, event: EventSummary } | undefined {
  if (verdict === undefined) return attempt.event === undefined ? undefined : { outcome: 'accepted', event: attempt.event }
  if (verdict instanceof DuplicateEventError) return { outcome: 'duplicate', event: attempt.event ?? verdict.event }
  if (verdict instanceof EventRejectedError) return { outcome: 'rejected', reason: verdict.reason, event: attempt.event ?? verdict.event }
  return undefined
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

/** Serializes audit records. Made once per broker: it caches what repeats from record to record. */
export class RecordWriter {
  readonly #options: RecordOptions
  readonly #nodeJson: string
  /** The ISO time of the millisecond `#clockMs`: under load, thousands of records share one. */
  #clockMs = -1
  #clockIso = ''

  constructor (options: RecordOptions) {
    this.#options = options
    this.#nodeJson = JSON.stringify(options.node)
  }

  /**
   * The record of one audited publish, as the bytes of one line of JSON. On the hot path
   * (the event was parsed by validation already, nothing to redact) the payload's own
   * bytes are copied in after the record's head instead of being parsed and serialized
   * again; only a payload with line breaks, which would split the JSON-lines log, or one
   * to redact, is re-serialized.
   */
  build (attempt: PublishAttempt, audited: NonNullable<ReturnType<typeof outcomeOf>>): Buffer {
    const { redact } = this.#options
    let event = audited.event
    if (redact !== undefined) {
      event = { ...event }
      redact(event)
    }
    let head = `{"at":"${this.#now()}","node":${this.#nodeJson},"outcome":"${audited.outcome}"`
    if (audited.reason !== undefined) head += `,"reason":${JSON.stringify(audited.reason)}`
    head += `,"clientId":${attempt.clientId === null ? 'null' : JSON.stringify(attempt.clientId)},"topic":${JSON.stringify(attempt.topic)}` +
      `,"qos":${attempt.qos},"retain":${attempt.retain ? 'true' : 'false'},"event":{`
    let first = true
    for (const key of EVENT_FIELDS) {
      const value = event[key]
      if (value === undefined) continue
      head += `${first ? '' : ','}"${key}":${JSON.stringify(value)}`
      first = false
    }
    head += '}'

    const bytes = attempt.payload
    if (!this.#options.payload || bytes.length === 0) return Buffer.from(`${head}}`)
    const parsedAlready = audited.outcome !== 'rejected' || attempt.event !== undefined
    if (parsedAlready && redact === undefined && bytes.indexOf(10) === -1 && bytes.indexOf(13) === -1) {
      const start = `${head},"payload":`
      const startBytes = Buffer.byteLength(start)
      const out = Buffer.allocUnsafe(startBytes + bytes.length + 1)
      out.write(start, 0, 'utf8')
      bytes.copy(out, startBytes)
      out[out.length - 1] = 0x7d // }
      return out
    }
    let payload: unknown
    try {
      payload = JSON.parse(bytes.toString('utf8'))
    } catch {
      return Buffer.from(`${head},"payloadBase64":${JSON.stringify(bytes.toString('base64'))}}`)
    }
    redact?.(payload)
    return Buffer.from(`${head},"payload":${JSON.stringify(payload)}}`)
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
