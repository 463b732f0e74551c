/** A payload as records and the HTTP API show it: JSON as JSON, anything else as base64. */
export type PayloadView = { readonly payload: unknown } | { readonly payloadBase64: string }

/** Show JSON payloads as parsed JSON and everything else (binary, plain text) as base64. */
export function viewPayload (payload: Buffer): PayloadView {
  try {
    return { payload: JSON.parse(payload.toString('utf8')) }
  } catch {
    // not JSON: keep the exact bytes
    return { payloadBase64: payload.toString('base64') }
  }
}
