import { Counter } from 'prom-client'
import { DuplicateEventError, definePlugin, type PublishAttempt, type PublishVerdict } from '../../src/index.js'
import type { IdempotencyStore } from './stores.js'

export { MemoryIdempotencyStore, RedisIdempotencyStore, type IdempotencyStore } from './stores.js'

/** Options of the idempotency plugin. */
export interface IdempotencyOptions {
  readonly store: IdempotencyStore
  /** How long an accepted event is remembered, in ms. */
  readonly windowMs: number
}

/**
 * Drops the second copy of an event: same `source` and `id` (the CloudEvents
 * uniqueness rule) within `windowMs` of the first accepted one. The copy is acked as
 * usual and reaches no one (`DuplicateEventError`, disposition `discard`).
 *
 * It runs after schema-validation and only sees events it described: plain MQTT
 * topics are not deduplicated. The key is claimed when the event reaches this
 * handler; if a later handler refuses the event, the claim is given back, so only
 * accepted events are remembered and a refused one may be fixed and sent again.
 */
export const idempotency = definePlugin<IdempotencyOptions>('idempotency', async (ctx, { store, windowMs }) => {
  const claimed = new WeakMap<PublishAttempt, string>()
  const failures = new Counter({ name: 'ce_broker_idempotency_store_errors_total', help: 'Idempotency store calls that failed (the event was let through)', registers: [ctx.metrics] })

  ctx.hooks.authorizePublish(function dropDuplicates (attempt: PublishAttempt): Promise<void> | undefined {
    const event = attempt.event
    if (event?.id === undefined || event.source === undefined) return undefined
    const { id, source } = event
    // length-prefixed: no source/id pair can spell another's key
    const key = `${source.length}:${source}${id}`
    const fresh = store.claim(key, windowMs)
    if (fresh === true) {
      claimed.set(attempt, key)
      return undefined
    }
    if (fresh === false) throw new DuplicateEventError(attempt.topic, { id, source })
    return fresh.then(function claimedOrNot (isFresh) {
      if (!isFresh) throw new DuplicateEventError(attempt.topic, { id, source })
      claimed.set(attempt, key)
    }, function storeFailed (err: unknown) {
      // fail open: delivering a rare duplicate beats refusing events while Redis is away
      failures.inc()
      ctx.reportError(err, { op: 'claim', eventId: id, source })
    })
  })

  ctx.hooks.decided(function giveBackRefused (attempt: PublishAttempt, verdict: PublishVerdict): void {
    if (verdict === undefined) return
    const key = claimed.get(attempt)
    if (key === undefined) return
    const released = store.release(key)
    if (released instanceof Promise) released.catch((err: unknown) => { ctx.reportError(err, { op: 'release', key }) })
  })
  ctx.log.info({ windowMs }, 'idempotency ready')
})
