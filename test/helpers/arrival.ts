import { setTimeout as sleep } from 'node:timers/promises'
import type { Redis } from 'ioredis'

/**
 * Wait until `ids()` holds every one of `expected` (event ids a subscriber or receiver
 * got); the ones still missing when `timeoutMs` ran out, `[]` when all arrived. What
 * arrived is the assertion, not how long it took.
 */
export async function arrival (ids: () => ReadonlySet<string>, expected: readonly string[], timeoutMs: number): Promise<string[]> {
  const until = Date.now() + timeoutMs
  let missing = expected.filter((id) => !ids().has(id))
  while (missing.length > 0 && Date.now() < until) {
    await sleep(100)
    missing = missing.filter((id) => !ids().has(id))
  }
  return missing
}

/** The event ids of the `accepted` records in the audit stream `key` (the default `audit.stream.key`). */
export async function auditedIds (redis: Redis, key = 'ce-broker:audit'): Promise<Set<string>> {
  const ids = new Set<string>()
  for (const [, fields] of await redis.xrange(key, '-', '+')) {
    const record = JSON.parse(fields[1] ?? '{}') as { outcome?: string, event?: { id?: string } }
    if (record.outcome === 'accepted' && record.event?.id !== undefined) ids.add(record.event.id)
  }
  return ids
}
