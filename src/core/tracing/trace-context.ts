/**
 * W3C Trace Context Level 1 (REC 2021-11-23) as the CloudEvents distributed-tracing
 * extension carries it: the `traceparent` and `tracestate` attributes of an event. Pure
 * checks, no I/O, no OpenTelemetry: they run in the validation workers too. The values
 * are attribute values, not HTTP fields, so the optional whitespace an HTTP header may
 * have around `traceparent` is not allowed here.
 */

/** A `traceparent` that passed the checks: its ids and flags, lowercase hex. */
export interface Traceparent {
  readonly version: string
  readonly traceId: string
  readonly parentId: string
  /** The trace-flags byte (bit 0: sampled). */
  readonly flags: number
}

/** Version 00, the whole value: `00-<trace-id>-<parent-id>-<trace-flags>`. */
const VERSION_00 = /^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/
/** A later version: its first 55 characters as version 00's, then the end or `-` and fields this version does not know (visible ASCII). */
const LATER_VERSION = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(?:-[\x21-\x7e]*)?$/
const HEX = /^[0-9a-f]*$/
const ZERO_TRACE_ID = '00000000000000000000000000000000'
const ZERO_PARENT_ID = '0000000000000000'
/** The length of a version-00 value, and of the part a later version shares with it. */
const LENGTH = 55

/**
 * What is wrong with a `traceparent` value, or `undefined` when it is valid. Version 00
 * must be exactly 55 characters; version `ff` is forbidden; a later version is read by
 * the spec's rules for versions it does not know (§3.2.4): its first 55 characters as
 * version 00's, followed by the end of the value or a `-`. Ids of all zeros are invalid.
 */
export function traceparentProblem (value: unknown): string | undefined {
  if (typeof value !== 'string') return 'not a string'
  if (VERSION_00.test(value) || (LATER_VERSION.test(value) && !value.startsWith('00-') && !value.startsWith('ff-'))) {
    if (value.slice(3, 35) === ZERO_TRACE_ID) return 'trace-id is all zeros'
    if (value.slice(36, 52) === ZERO_PARENT_ID) return 'parent-id is all zeros'
    return undefined
  }
  return diagnose(value)
}

/** Why a value that matched neither form is not a `traceparent`: the first field that is wrong, in order. */
function diagnose (value: string): string {
  const version = value.slice(0, 2)
  if (version.length < 2 || !HEX.test(version) || value[2] !== '-') return 'version is not 2 lowercase hex digits followed by "-"'
  if (version === 'ff') return 'version ff is forbidden'
  if (version === '00' && value.length !== LENGTH) return `version 00 is ${LENGTH} characters long, this is ${value.length}`
  if (value.length < LENGTH) return `shorter than ${LENGTH} characters`
  const fields: ReadonlyArray<readonly [string, number, number]> = [['trace-id', 3, 32], ['parent-id', 36, 16], ['trace-flags', 53, 2]]
  for (const [name, at, length] of fields) {
    const field = value.slice(at, at + length)
    if (!HEX.test(field)) return `${name} is not ${length} lowercase hex digits`
    const next = value[at + length]
    if (next !== undefined && next !== '-') return `${name} is not followed by "-"`
  }
  return 'the fields after trace-flags are not visible ASCII'
}

/** A valid `traceparent` read into its fields, or `undefined` when it is not valid. */
export function parseTraceparent (value: unknown): Traceparent | undefined {
  if (typeof value !== 'string' || traceparentProblem(value) !== undefined) return undefined
  return { version: value.slice(0, 2), traceId: value.slice(3, 35), parentId: value.slice(36, 52), flags: Number.parseInt(value.slice(53, 55), 16) }
}

/** A span context as a version-00 `traceparent`: `00-<trace-id>-<span-id>-<flags>`. */
export function formatTraceparent (traceId: string, spanId: string, flags: number): string {
  return `00-${traceId}-${spanId}-${(flags & 0xff).toString(16).padStart(2, '0')}`
}

/** Most list-members a `tracestate` may have (empty ones included, as the ABNF counts them). */
export const MAX_TRACESTATE_MEMBERS = 32
/** simple-key / multi-tenant-key (Level 1 §3.3.1.3.1). */
const KEY = /^(?:[a-z][a-z0-9_*/-]{0,255}|[a-z0-9][a-z0-9_*/-]{0,240}@[a-z][a-z0-9_*/-]{0,13})$/
/** Up to 256 printable ASCII characters but `,` and `=`, the last one not a space. */
const VALUE = /^[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/
/** Optional whitespace around a list-member. */
const OWS = /^[ \t]+|[ \t]+$/g
/** A list of empty members only. */
const NO_MEMBERS = /^[ \t,]*$/

/**
 * What is wrong with a `tracestate` value, or `undefined` when it is valid: a list of at
 * most 32 comma-separated `key=value` members (spaces and tabs around each ignored, empty
 * members allowed), each key unique and of the Level 1 key grammar, each value of up to
 * 256 printable characters without `,` and `=`. Members are named by their position.
 */
export function tracestateProblem (value: unknown): string | undefined {
  if (typeof value !== 'string') return 'not a string'
  const members = value.split(',')
  if (members.length > MAX_TRACESTATE_MEMBERS) return `more than ${MAX_TRACESTATE_MEMBERS} list-members (${members.length})`
  const keys = new Set<string>()
  for (const [index, raw] of members.entries()) {
    const member = raw.replace(OWS, '')
    if (member === '') continue
    const at = member.indexOf('=')
    if (at <= 0) return `list-member ${index + 1} is not key=value`
    const key = member.slice(0, at)
    if (!KEY.test(key)) return `list-member ${index + 1} has a key outside the key grammar`
    if (!VALUE.test(member.slice(at + 1))) return `list-member ${index + 1} has a value outside the value grammar`
    if (keys.has(key)) return `list-member ${index + 1} repeats the key of an earlier one`
    keys.add(key)
  }
  return undefined
}

/**
 * What is wrong with an event's trace context (its `traceparent` and `tracestate`
 * attributes, either of them absent), as the audit record says it, or `undefined` when
 * there is nothing wrong. A malformed `traceparent` is reported alone: the spec forbids
 * reading `tracestate` then.
 */
export function traceContextProblem (traceparent: unknown, tracestate: unknown): string | undefined {
  if (traceparent === undefined) return tracestate === undefined ? undefined : 'tracestate without traceparent'
  const parentProblem = traceparentProblem(traceparent)
  if (parentProblem !== undefined) return `malformed traceparent: ${parentProblem}`
  if (tracestate === undefined) return undefined
  const stateProblem = tracestateProblem(tracestate)
  return stateProblem === undefined ? undefined : `malformed tracestate: ${stateProblem}`
}

/**
 * The trace context of an event as it may go on: its `traceparent` when valid, with its
 * `tracestate` when that is valid too (trimmed of the optional whitespace around it, and
 * left out when empty), or `undefined`. A later version is brought down to version 00,
 * the highest this implementation knows, as the spec requires of what it sends on.
 */
export function propagatedTraceContext (traceparent: unknown, tracestate: unknown): { readonly traceparent: string, readonly tracestate?: string } | undefined {
  const parsed = parseTraceparent(traceparent)
  if (parsed === undefined) return undefined
  const value = parsed.version === '00' && typeof traceparent === 'string' ? traceparent : formatTraceparent(parsed.traceId, parsed.parentId, parsed.flags)
  if (typeof tracestate !== 'string' || tracestateProblem(tracestate) !== undefined) return { traceparent: value }
  // no members at all (empty ones only): not sent, as the spec advises
  if (NO_MEMBERS.test(tracestate)) return { traceparent: value }
  return { traceparent: value, tracestate: tracestate.replace(OWS, '') }
}
