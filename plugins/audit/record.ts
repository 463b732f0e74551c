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

/**
 * The record of one audited publish, serialized on one line. On the hot path (an
 * accepted event, no redaction) the payload's own JSON text is spliced in rather than
 * parsed and serialized again: it was parsed by validation already; only a payload
 * with line breaks, which would split the JSON-lines log, is re-serialized.
 */
export function buildRecord (attempt: PublishAttempt, audited: NonNullable<ReturnType<typeof outcomeOf>>, options: RecordOptions): string {
  const { id, type, source, time } = audited.event
  const event: { -readonly [K in keyof AuditRecord['event']]: AuditRecord['event'][K] } = {}
  if (id !== undefined) event.id = id
  if (type !== undefined) event.type = type
  if (source !== undefined) event.source = source
  if (time !== undefined) event.time = time
  options.redact?.(event)
  const record: AuditRecord = {
    at: new Date().toISOString(),
    node: options.node,
    outcome: audited.outcome,
    ...(audited.reason === undefined ? {} : { reason: audited.reason }),
    clientId: attempt.clientId,
    topic: attempt.topic,
    qos: attempt.qos,
    retain: attempt.retain,
    event
  }
  const head = JSON.stringify(record)
  const bytes = attempt.payload
  if (!options.payload || bytes.length === 0) return head
  const parsedAlready = audited.outcome !== 'rejected' || attempt.event !== undefined
  if (parsedAlready && options.redact === undefined && bytes.indexOf(10) === -1 && bytes.indexOf(13) === -1) {
    return `${head.slice(0, -1)},"payload":${bytes.toString('utf8')}}`
  }
  let payload: unknown
  try {
    payload = JSON.parse(bytes.toString('utf8'))
  } catch {
    return `${head.slice(0, -1)},"payloadBase64":${JSON.stringify(bytes.toString('base64'))}}`
  }
  options.redact?.(payload)
  return `${head.slice(0, -1)},"payload":${JSON.stringify(payload)}}`
}
