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

/** A request still pending `STUCK_GRACE_MS` after its AbortSignal fired: undici did not end it. */
export class StuckRequestError extends Error {
  override readonly name = 'StuckRequestError'
}

/**
 * `work`, or a `StuckRequestError` when it has not settled `graceMs` after `signal`
 * aborted. undici ends a request whose signal aborts only once it holds a connection; one
 * waiting in a pool's queue, or for a connection being opened, is not ended by it.
 */
export async function settleWithin<T> (work: Promise<T>, signal: AbortSignal, graceMs: number): Promise<T> {
  return await new Promise<T>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined
    const onAbort = (): void => {
      timer = setTimeout(function requestStuck () { reject(new StuckRequestError('the request did not end when its deadline passed')) }, graceMs)
    }
    if (signal.aborted) onAbort()
    else signal.addEventListener('abort', onAbort, { once: true })
    const settle = (): void => {
      clearTimeout(timer)
      signal.removeEventListener('abort', onAbort)
    }
    // a late settlement after the StuckRequestError is ignored here (a settled promise stays settled), not left unhandled
    work.then((value) => { settle(); resolve(value) }, (err: unknown) => { settle(); reject(err) })
  })
}

/** Close `agent`, waiting for its requests at most `ms`; then destroy it, which fails those still pending. */
export async function closeWithin (agent: Agent, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const closed = agent.close().then(() => 'closed' as const)
  const late = new Promise<'late'>((resolve) => { timer = setTimeout(resolve, ms, 'late') })
  try {
    if (await Promise.race([closed, late]) === 'late') {
      // a wedged pool never finishes closing; destroy() supersedes close(), whose outcome no longer matters
      closed.catch(() => undefined)
      await agent.destroy()
    }
  } finally {
    clearTimeout(timer)
  }
}

export function refusedBeforeSending (err: unknown): boolean {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' && REFUSED_BEFORE_SENDING.has(err.code)
}

