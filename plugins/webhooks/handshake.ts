import { Agent, request, type buildConnector } from 'undici'
import { closeWithin, settleWithin } from './bounded.js'
import { DeniedAddressError } from './url-policy.js'

/** After its deadline, how long the handshake may take to come back aborted before it is given up. */
const GRACE_MS = 1000

/** What a handshake needs: where, who asks, how long it may take, and the URL policy's connector. */
export interface HandshakeRequest {
  readonly url: string
  /** `webhooks.origin`: sent as `WebHook-Request-Origin`. */
  readonly origin: string
  readonly timeoutMs: number
  /** Opens the connection: the URL policy's, which refuses denied addresses. */
  readonly connect: buildConnector.connector
}

/** How a handshake ended: the rate the endpoint allows (requests a minute; `undefined`: no limit), or why it refused. */
export type HandshakeResult =
  | { readonly ok: true, readonly allowedRate: number | undefined }
  | { readonly ok: false, readonly problem: string }

/**
 * The validation handshake of CloudEvents "HTTP 1.1 Web Hooks for Event Delivery" §4.1:
 * `OPTIONS <url>` with `WebHook-Request-Origin`; the endpoint agrees with a 2xx whose
 * `WebHook-Allowed-Origin` is the origin or `*`, and may limit the rate with
 * `WebHook-Allowed-Rate` (requests a minute, or `*`). `WebHook-Request-Callback` (the
 * asynchronous variant) is not offered: the endpoint must answer in the request.
 */
export async function handshake (req: HandshakeRequest): Promise<HandshakeResult> {
  // a pool of its own, closed after the one request: the delivery pools stay the deliveries'
  const agent = new Agent({ connections: 1, connect: req.connect })
  const deadline = AbortSignal.timeout(req.timeoutMs)
  try {
    const res = await settleWithin(request(req.url, {
      method: 'OPTIONS',
      dispatcher: agent,
      headers: { 'webhook-request-origin': req.origin },
      headersTimeout: req.timeoutMs,
      bodyTimeout: req.timeoutMs,
      signal: deadline
    }), deadline, GRACE_MS)
    await res.body.dump()
    return answerOf(res.statusCode, res.headers, req.origin)
  } catch (err: unknown) {
    if (err instanceof DeniedAddressError) return { ok: false, problem: err.message }
    return { ok: false, problem: deadline.aborted ? `no answer within ${req.timeoutMs} ms` : err instanceof Error ? err.message : String(err) }
  } finally {
    await closeWithin(agent, GRACE_MS)
  }
}

/** What the endpoint's answer means for the origin `origin`. */
export function answerOf (status: number, headers: Readonly<Record<string, string | string[] | undefined>>, origin: string): HandshakeResult {
  const allowed = single(headers['webhook-allowed-origin'])
  if (status < 200 || status > 299) return { ok: false, problem: `it answered HTTP ${status}${allowed === undefined ? '' : ` (WebHook-Allowed-Origin: ${allowed})`}` }
  if (allowed === undefined) return { ok: false, problem: `it answered HTTP ${status} without WebHook-Allowed-Origin` }
  if (allowed !== '*' && allowed !== origin) return { ok: false, problem: `it allows origin ${JSON.stringify(allowed)}, not ${JSON.stringify(origin)}` }
  const rate = single(headers['webhook-allowed-rate'])
  if (rate === undefined || rate === '*') return { ok: true, allowedRate: undefined }
  if (!/^[1-9]\d{0,8}$/.test(rate)) return { ok: false, problem: `its WebHook-Allowed-Rate ${JSON.stringify(rate)} is neither a positive integer nor *` }
  return { ok: true, allowedRate: Number(rate) }
}

function single (value: string | string[] | undefined): string | undefined {
  const first = Array.isArray(value) ? value[0] : value
  return first === undefined ? undefined : first.trim()
}
