/** Bounds in time around undici, which does not always end what it was asked to end. */
import type { Agent } from 'undici'

/** A request still pending a grace time after its AbortSignal fired: undici did not end it. */
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
