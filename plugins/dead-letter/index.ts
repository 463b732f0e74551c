import { randomUUID } from 'node:crypto'
import { Counter } from 'prom-client'
import {
  DeliveryFailedError, EventRejectedError, MAX_ERRORS, definePlugin, type Settings, service, viewPayload,
  type BrokerError, type PluginContext, type PublishAttempt
} from '../../src/core/index.js'
import { RedisDeadLetterStore } from './redis-store.js'
import { Redrive } from './redrive.js'
import { MemoryRedriveJobStore } from './redrive-jobs.js'
import { RedisRedriveJobStore } from './redrive-redis-jobs.js'
import { redriveRoutes } from './redrive-routes.js'
import { deadLetterRoutes } from './routes.js'
import type { Redeliver } from './replay.js'
import { MemoryDeadLetterStore, type DeadLetterRecord, type DeadLetterStore } from './store.js'
import { deadLettersSection } from './config.js'

export { MemoryDeadLetterStore, type DeadLetterEntry, type DeadLetterPage, type DeadLetterQuery, type DeadLetterRecord, type DeadLetterStore, type OriginalMessage } from './store.js'
export { RedisDeadLetterStore } from './redis-store.js'
export type { Redeliver } from './replay.js'
export type { RedriveJob, RedriveState } from './redrive-jobs.js'

/** Options of the dead-letter plugin: the `deadLetters` section of the config. */
export type DeadLetterOptions = Settings<typeof deadLettersSection.schema>

/** What the dead-letter plugin offers the plugins after it. */
export interface DeadLetters {
  /** Where records are kept (memory embedded, Redis in a cluster). */
  readonly store: DeadLetterStore
  /** Replay dead letters of `reason` through `redeliver` instead of publishing them again (the webhooks: `delivery_failed`). */
  readonly redeliverer: (reason: string, redeliver: Redeliver) => void
}

/** The dead-letter plugin's service. */
export const DEAD_LETTERS = service<DeadLetters>('dead-letters')

/**
 * Keeps every refused event: builds its dead-letter record (PRODUCT §3), stores
 * it with the original bytes for replay, and hands the record to the broker, which
 * tells an MQTT publisher on `$rejections/<clientId>` (before answering it) and
 * publishes it on `$DLQ/<topic>`. A refusal that is not kept (`not_authorized`,
 * `duplicate`) only gets its record built, for the publisher: not stored, not counted. A replay that fails again
 * updates its entry instead of adding one. Serves `/api/dlq`.
 */
export const deadLetter = definePlugin<DeadLetterOptions>({ name: 'dead-letter', sections: [deadLettersSection], setup: setupDeadLetter })

async function setupDeadLetter (ctx: PluginContext, { maxEntries, replayRatePerSecond, replayLeaseMs }: DeadLetterOptions): Promise<() => Promise<void>> {
  const evicted = new Counter({ name: 'ce_broker_dead_letters_evicted_total', help: 'Dead letters evicted from the full store, oldest first', registers: [ctx.metrics] })
  const onEvict = (count: number): void => { evicted.inc(count) }
  const store: DeadLetterStore = ctx.redis === undefined ? new MemoryDeadLetterStore(maxEntries, onEvict) : new RedisDeadLetterStore(ctx.redis, maxEntries, onEvict)
  const redeliverers = new Map<string, Redeliver>()
  ctx.provide(DEAD_LETTERS, {
    store,
    redeliverer: (reason, redeliver) => { redeliverers.set(reason, redeliver) }
  })
  const source = { deadLetters: store, submit: ctx.submit, redeliverers }
  // a lease shorter than three pauses between two replays would run out while the job paces itself (another node could take a live job)
  const leaseMs = Math.max(replayLeaseMs, Math.ceil(3_000 / replayRatePerSecond))
  if (leaseMs !== replayLeaseMs) ctx.log.warn({ replayLeaseMs, replayRatePerSecond, leaseMs }, 'deadLetters.replayLeaseMs is shorter than three pauses of deadLetters.replayRatePerSecond: the longer is used')
  const redrive = new Redrive({
    source,
    jobs: ctx.redis === undefined ? new MemoryRedriveJobStore(leaseMs) : new RedisRedriveJobStore(ctx.redis, leaseMs),
    nodeId: ctx.nodeId,
    ratePerSecond: replayRatePerSecond,
    leaseMs,
    log: ctx.log,
    logIntervalMs: ctx.config.limits.clientLogIntervalMs,
    metrics: ctx.metrics,
    reportError: ctx.reportError
  })
  ctx.routes(async function routes (app) {
    await app.register(deadLetterRoutes, source)
    await app.register(redriveRoutes, { redrive })
  })
  const counted = new Counter({
    name: 'ce_broker_dead_letters_total',
    help: 'Events dead-lettered, by reason',
    labelNames: ['reason'] as const,
    registers: [ctx.metrics]
  })

  ctx.hooks.deadLetter(function keepDeadLetter (attempt: PublishAttempt, error: BrokerError, keep: boolean): Buffer {
    const rejected = error instanceof EventRejectedError ? error : undefined
    const undelivered = error instanceof DeliveryFailedError ? error : undefined
    const reason = error.reason
    const id = attempt.replayOf ?? randomUUID()
    const record: DeadLetterRecord = {
      specversion: '1.0',
      type: 'ce-broker.deadletter',
      source: `ce-broker://${ctx.nodeId}`,
      id,
      time: new Date().toISOString(),
      datacontenttype: 'application/json',
      data: {
        reason,
        errors: (rejected?.problems ?? [{ path: '', message: error.message }]).slice(0, MAX_ERRORS),
        topic: attempt.topic,
        clientId: attempt.clientId,
        ...viewPayload(attempt.payload),
        ...(undelivered === undefined
          ? {}
          : { attempts: undelivered.attempts, ...(undelivered.lastStatus === undefined ? {} : { lastStatus: undelivered.lastStatus }), subscription: undelivered.subscription })
      }
    }
    if (keep) {
      const stored = attempt.replayOf === undefined
        ? store.add({ id, record, original: { topic: attempt.topic, payload: attempt.payload, qos: attempt.qos, retain: attempt.retain, clientId: attempt.clientId } })
        : store.replace(attempt.replayOf, record)
      stored.catch((err: unknown) => { ctx.reportError(err, { op: 'store dead letter', id, topic: attempt.topic }) })
      counted.inc({ reason })
    }

    // the core tells an MQTT publisher on `$rejections/<clientId>` before answering it
    return Buffer.from(JSON.stringify(record))
  })
  return async function stopRedrive () { await redrive.close() }
}
