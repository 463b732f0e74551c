import { randomUUID } from 'node:crypto'
import { Counter } from 'prom-client'
import {
  DeliveryFailedError, EventRejectedError, MAX_ERRORS, REJECTIONS_PREFIX, TRANSPORTS, definePlugin, viewPayload,
  type BrokerError, type DeadLetterRecord, type DeadLetterStore, type Origin, type PublishAttempt
} from '../../src/index.js'

/** Options of the dead-letter plugin. */
export interface DeadLetterOptions {
  /** Where records are kept (memory or Redis). */
  readonly store: DeadLetterStore
}

const MQTT_ORIGINS: ReadonlySet<Origin> = new Set(TRANSPORTS)

/**
 * Keeps every refused event: builds its dead-letter record (PRODUCT §3), stores
 * it with the original bytes for replay, tells the publisher on
 * `$rejections/<clientId>`, and hands the record to the broker, which publishes
 * it on `$DLQ/<topic>`. A refusal that is not kept (`not_authorized`, `duplicate`) is
 * only told to the publisher: not stored, not counted. A replay that fails again
 * updates its entry instead of adding one.
 */
export const deadLetter = definePlugin<DeadLetterOptions>('dead-letter', async (ctx, { store }) => {
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

    const bytes = Buffer.from(JSON.stringify(record))
    if (attempt.clientId !== null && MQTT_ORIGINS.has(attempt.origin)) {
      ctx.publish({ topic: REJECTIONS_PREFIX + attempt.clientId, payload: bytes, qos: 1 })
        .catch((err: unknown) => { ctx.reportError(err, { op: 'publish rejection', clientId: attempt.clientId }) })
    }
    return bytes
  })
})
