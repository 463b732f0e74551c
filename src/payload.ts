/** A payload as records and the HTTP API show it: JSON as JSON, anything else as base64. */
export type PayloadView = { readonly payload: unknown } | { readonly payloadBase64: string }

/** Show JSON payloads as parsed JSON and everything else (binary, plain text) as base64. */
export function viewPayload (payload: Buffer): PayloadView {
  // JSON.parse takes any depth, but JSON.stringify recurses: a record holding a
  // payload nested deeper than this could not be written out, so it keeps the bytes
  if (nestingDepth(payload) > MAX_VIEW_DEPTH) return { payloadBase64: payload.toString('base64') }
  try {
    return { payload: JSON.parse(payload.toString('utf8')) }
  } catch {
    // not JSON: keep the exact bytes
    return { payloadBase64: payload.toString('base64') }
  }
}

/** Nesting beyond which a payload is kept as bytes in records, not as JSON. */
export const MAX_VIEW_DEPTH = 1000

/** How deep `[` and `{` nest in JSON text (strings skipped), in one pass over the bytes; stops counting past `MAX_VIEW_DEPTH`. */
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
