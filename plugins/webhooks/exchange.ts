import { request, type Agent } from 'undici'
import { isRetryable, retryAfterMs } from './retry.js'
import type { WebhookRequest } from './request.js'

/** How an attempt ended. */
export type AttemptResult =
  | { readonly kind: 'delivered', readonly status: number }
  | { readonly kind: 'retry', readonly status: number | undefined, readonly error: string, readonly retryAfterMs: number | undefined }
  | { readonly kind: 'failed', readonly status: number | undefined, readonly error: string, readonly gone: boolean }

/**
 * undici error codes of a request refused before anything was sent: asking again
 * would meet the same refusal (an invalid header, method or body).
 */
const REFUSED_BEFORE_SENDING: ReadonlySet<string> = new Set(['UND_ERR_INVALID_ARG', 'UND_ERR_NOT_SUPPORTED', 'UND_ERR_INVALID_RETURN_VALUE', 'ERR_INVALID_URL'])

/** One request and its answer, read to the end, as an attempt's result. */
export async function exchange (agent: Agent, url: string, built: WebhookRequest, timeoutMs: number, signal: AbortSignal): Promise<AttemptResult> {
  const res = await request(url, {
    method: 'POST',
    headers: built.headers,
    body: built.body,
    dispatcher: agent,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    signal
  })
  // the answer's body is not used: read (up to undici's default 128 KiB, then the connection is dropped) and thrown away
  await res.body.dump({ limit: 131_072, signal })
  const status = res.statusCode
  if (status >= 200 && status < 300) return { kind: 'delivered', status }
  if (isRetryable(status)) return { kind: 'retry', status, error: `HTTP ${status}`, retryAfterMs: retryAfterMs(res.headers['retry-after']) }
  return { kind: 'failed', status, error: `HTTP ${status}`, gone: status === 410 }
}

export function refusedBeforeSending (err: unknown): boolean {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' && REFUSED_BEFORE_SENDING.has(err.code)
}

