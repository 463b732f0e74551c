/** A payload as records and the HTTP API show it: JSON as JSON, anything else as base64. */
export type PayloadView = { readonly payload: unknown } | { readonly payloadBase64: string }

/** A payload parsed as JSON, or why it is not JSON. */
export type ParsedJson = { readonly ok: true, readonly value: unknown } | { readonly ok: false, readonly error: string }

/**
 * How many recent parses are kept. An event's readers come one right after another
 * (validation on the event loop, then the webhooks as aedes publishes it, a dead-letter
 * record on a refusal), so a short memory finds it; a reader that comes later parses
 * again, which is only slower. It keeps at most this many payloads alive.
 */
export const RECENT_PARSES = 16

/**
 * The last `RECENT_PARSES` parses, by buffer identity, in a ring. Not a WeakMap by
 * buffer: a weak entry per event (the validation worker's included, which nobody reads
 * after) cost `fanin-qos0-pipeline` 6 % of its throughput (this ring: 1.062 of the
 * WeakMap's figure, measured in one run of 5 rounds).
 */
const recentBuffers: Array<Buffer | undefined> = new Array<Buffer | undefined>(RECENT_PARSES).fill(undefined)
const recentParses: Array<ParsedJson | undefined> = new Array<ParsedJson | undefined>(RECENT_PARSES).fill(undefined)
let nextSlot = 0

/**
 * `payload` parsed as JSON; the readers of one event share the parse (see
 * `RECENT_PARSES`). The value is shared: read it, never change it (copy what you must change).
 */
export function parseJson (payload: Buffer): ParsedJson {
  for (let i = 0; i < RECENT_PARSES; i++) {
    if (recentBuffers[i] === payload) {
      const parsed = recentParses[i]
      if (parsed !== undefined) return parsed
    }
  }
  let parsed: ParsedJson
  try {
    parsed = { ok: true, value: JSON.parse(payload.toString('utf8')) }
  } catch (err: unknown) {
    parsed = { ok: false, error: err instanceof Error ? err.message : String(err) }
  }
  recentBuffers[nextSlot] = payload
  recentParses[nextSlot] = parsed
  nextSlot = (nextSlot + 1) % RECENT_PARSES
  return parsed
}

/** Show JSON payloads as parsed JSON and everything else (binary, plain text) as base64. */
export function viewPayload (payload: Buffer): PayloadView {
  // JSON.parse takes any depth, but JSON.stringify recurses: a record holding a
  // payload nested deeper than this could not be written out, so it keeps the bytes
  if (nestingDepth(payload) > MAX_VIEW_DEPTH) return { payloadBase64: payload.toString('base64') }
  const parsed = parseJson(payload)
  // not JSON: keep the exact bytes
  return parsed.ok ? { payload: parsed.value } : { payloadBase64: payload.toString('base64') }
}

/**
 * JSON nested deeper than this many levels (`[]` and `{}` are one level) is not an
 * event: it is refused as `invalid_json` on every ingress (MQTT, and each HTTP route).
 * A fixed limit rather than catching the RangeError of a stack overflow: JSON.parse
 * takes any depth, and what overflows later (JSON.stringify of a value in an error
 * message or a record, the HTTP routes re-serializing an event, a recursive schema in
 * ajv, webhook bodies) does so at a depth that depends on the stack left and on the path
 * the event takes, so catching would refuse an event on one route and pass it on
 * another. 1000 is what Jackson allows by default, and far below where Node overflows.
 */
export const MAX_JSON_DEPTH = 1000

/**
 * Nesting beyond which a payload is kept as bytes in records, not as JSON: the same
 * as `MAX_JSON_DEPTH`, so a record shows every accepted event as JSON and keeps every
 * event refused for its depth as base64.
 */
export const MAX_VIEW_DEPTH = MAX_JSON_DEPTH

/**
 * Whether JSON text of `length` characters (or bytes) could nest deeper than `limit`:
 * each level takes an opening and a closing bracket, so shorter text cannot, and needs
 * no look at its parsed value. Keeps the depth check off the path of ordinary events.
 */
export function mayNestDeeperThan (length: number, limit = MAX_JSON_DEPTH): boolean {
  return length >= 2 * (limit + 1)
}

/**
 * Whether a parsed JSON value nests deeper than `limit` levels. Iterative (a value too
 * deep for the stack is what it looks for), and it visits values, not bytes: measured at
 * 1-2 % of the JSON.parse that made the value for string-heavy events, about 20 % for
 * ones made of many small objects (a byte scan took 2-3 times the parse). Call it only
 * when `mayNestDeeperThan` says the text was long enough.
 */
export function nestedDeeperThan (value: unknown, limit = MAX_JSON_DEPTH): boolean {
  if (typeof value !== 'object' || value === null) return false
  const pending: object[] = [value]
  const depths: number[] = [1]
  for (let node = pending.pop(); node !== undefined; node = pending.pop()) {
    const depth = depths.pop() ?? 0
    if (depth > limit) return true
    if (Array.isArray(node)) {
      for (const item of node) {
        if (typeof item === 'object' && item !== null) { pending.push(item); depths.push(depth + 1) }
      }
    } else {
      for (const key in node) {
        const item: unknown = Reflect.get(node, key)
        if (typeof item === 'object' && item !== null) { pending.push(item); depths.push(depth + 1) }
      }
    }
  }
  return false
}

/** How deep `[` and `{` nest in JSON text (strings skipped), in one pass over the bytes; stops counting past `MAX_VIEW_DEPTH`. For records, off the hot path. */
export function nestingDepth (json: Buffer): number {
  let depth = 0
  let deepest = 0
  let inString = false
  for (let i = 0; i < json.length; i++) {
    const c = json[i]
    if (inString) {
      if (c === 0x5c /* \\ */) i++
      else if (c === 0x22 /* " */) inString = false
    } else if (c === 0x22) {
      inString = true
    } else if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      if (++depth > deepest) deepest = depth
      if (deepest > MAX_VIEW_DEPTH) return deepest
    } else if (c === 0x5d /* ] */ || c === 0x7d /* } */) {
      depth--
    }
  }
  return deepest
}
