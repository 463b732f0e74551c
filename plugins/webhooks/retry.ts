import type { RetryPolicy } from './subscriptions.js'

/** Backoff before attempt `attempt + 1` (1-based `attempt` just failed): full jitter over an exponential cap. */
export function backoffMs (policy: RetryPolicy, attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** (attempt - 1))
  return Math.floor(random() * ceiling)
}

/** `Retry-After` as milliseconds (seconds or an HTTP date), or `undefined`. */
export function retryAfterMs (header: string | string[] | undefined, now = Date.now()): number | undefined {
  const value = Array.isArray(header) ? header[0] : header
  if (value === undefined || value.trim() === '') return undefined
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000
  const at = Date.parse(value)
  return Number.isNaN(at) ? undefined : Math.max(0, at - now)
}

/** 408, 429 and 5xx are worth another attempt; other statuses are final. */
export function isRetryable (status: number): boolean {
  return status === 408 || status === 429 || status >= 500
}
