import { Counter } from 'prom-client'
import { DuplicateEventError, definePlugin, type Settings, type PluginContext, type PublishAttempt, type PublishVerdict } from '../../src/core/index.js'
import { MemoryIdempotencyStore, RedisIdempotencyStore, type IdempotencyStore } from './stores.js'
import { idempotencySection } from './config.js'

export { MemoryIdempotencyStore, RedisIdempotencyStore, type IdempotencyStore } from './stores.js'

/** Options of the idempotency plugin: the `idempotency` section of the config (`enabled` is the preset's to read). */
export type IdempotencyOptions = Settings<typeof idempotencySection.schema>

/**
 * Drops the second copy of an event: same `source` and `id` (the CloudEvents
 * uniqueness rule) within `windowMs` of the first accepted one. The copy is acked as
 * usual and reaches no one (`DuplicateEventError`, disposition `discard`); it is not
 * dead-lettered, and an MQTT publisher is told on `$rejections/<clientId>` (reason
 * `duplicate`), so a publish run twice is not silent.
 *
 * It runs after schema-validation and only sees events it described: plain MQTT
 * topics are not deduplicated. Only accepted events are remembered, so a refused one
 * may be fixed and sent again. Embedded, the key is claimed when the event reaches
 * this handler and given back if a later handler refuses the event. With Redis, the
 * broker's commit takes the claim once every handler has passed the event, in the
 * same atomic step that writes the event to the node's journal: a claim is never
 * durable without the work it guards (a node killed in between would otherwise have
 * the publisher's resent copy dropped as a duplicate of an event nobody delivers).
 */
export const idempotency = definePlugin<IdempotencyOptions>({ name: 'idempotency', sections: [idempotencySection], dependsOn: ['schema-validation'], setup: setupIdempotency })

async function setupIdempotency (ctx: PluginContext, { windowMs, maxEntries }: IdempotencyOptions): Promise<undefined> {
  const store = storeOf(ctx, maxEntries)
  /** Events let through because the store failed: no claim of ours to give back. Rare, so a WeakSet off the hot path. */
  const unclaimed = new WeakSet<PublishAttempt>()
  /** Events whose claim the broker's commit takes (with Redis): nothing to give back. */
  const leftToCommit = new WeakSet<PublishAttempt>()
  const failures = new Counter({ name: 'ce_broker_idempotency_store_errors_total', help: 'Idempotency store calls that failed (the event was let through)', registers: [ctx.metrics] })

  ctx.hooks.authorizePublish(function dropDuplicates (attempt: PublishAttempt): Promise<void> | undefined {
    const event = attempt.event
    if (event?.id === undefined || event.source === undefined) return undefined
    if (store instanceof RedisIdempotencyStore && attempt.claim(store.keyOf(event.source, event.id), windowMs, () => duplicate(attempt))) {
      leftToCommit.add(attempt)
      return undefined
    }
    const fresh = store.claim(event.source, event.id, windowMs)
    if (fresh === true) return undefined
    if (fresh === false) throw duplicate(attempt)
    return fresh.then(function claimedOrNot (isFresh) {
      if (!isFresh) throw duplicate(attempt)
    }, function storeFailed (err: unknown) {
      // fail open: delivering a rare duplicate beats refusing events while Redis is away
      unclaimed.add(attempt)
      failures.inc()
      ctx.reportError(err, { op: 'claim', eventId: attempt.event?.id, source: attempt.event?.source })
    })
  })

  ctx.hooks.decided(function giveBackRefused (attempt: PublishAttempt, verdict: PublishVerdict): void {
    // Refused after the claim: only validated events carry an event, and validation runs
    // before this plugin, so a described event that was refused, not as a duplicate, was
    // refused by a handler after the claim. Its key is given back; a claim left to the
    // commit was never taken.
    if (verdict === undefined || verdict instanceof DuplicateEventError || unclaimed.has(attempt) || leftToCommit.has(attempt)) return
    const event = attempt.event
    if (event?.id === undefined || event.source === undefined) return
    const released = store.release(event.source, event.id)
    if (released instanceof Promise) released.catch((err: unknown) => { ctx.reportError(err, { op: 'release', eventId: event.id, source: event.source }) })
  })
  ctx.log.info({ windowMs }, 'idempotency ready')
  return undefined
}

/** Embedded, an LRU in memory (what it forgets early is counted); with Redis, keys every node sees. */
function storeOf (ctx: PluginContext, maxEntries: number): IdempotencyStore {
  if (ctx.redis !== undefined) return new RedisIdempotencyStore(ctx.redis)
  const evicted = new Counter({ name: 'ce_broker_idempotency_evicted_total', help: 'Events the full memory idempotency store forgot before their window ended', registers: [ctx.metrics] })
  return new MemoryIdempotencyStore(maxEntries, () => { evicted.inc() })
}

function duplicate (attempt: PublishAttempt): DuplicateEventError {
  return new DuplicateEventError(attempt.topic, { id: attempt.event?.id ?? '', source: attempt.event?.source ?? '' })
}
