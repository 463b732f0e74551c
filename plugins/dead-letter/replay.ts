import { EventRejectedError, type BrokerError, type OutgoingMessage, type SubmitOptions } from '../../src/core/index.js'
import type { DeadLetterEntry, DeadLetterStore } from './store.js'

/**
 * Deliver a dead letter again to the one destination it failed at (a webhook
 * subscription): why it cannot (the subscription is gone or disabled, not a
 * CloudEvent), or `undefined` when it is queued.
 */
export type Redeliver = (entry: DeadLetterEntry) => string | undefined

/** What a replay uses. */
export interface ReplaySource {
  readonly deadLetters: DeadLetterStore
  /** The whole publish pipeline, as for a client publish. */
  readonly submit: (message: OutgoingMessage, options: SubmitOptions) => Promise<BrokerError | undefined>
  /** Who redelivers a dead letter of this reason instead of publishing it again (the delivery reasons: the webhooks). */
  readonly redeliverers: ReadonlyMap<string, Redeliver>
}

/**
 * Reasons of an event accepted once whose delivery to one webhook subscription failed
 * (`delivery_failed`), ran past its time-to-live (`expired`) or found the queue full
 * (`queue_full`): a replay delivers it to that subscription only, never publishes it again.
 */
const DELIVERY_REASONS: ReadonlySet<string> = new Set(['delivery_failed', 'expired', 'queue_full'])

/** How one replay ended. */
export type ReplayOutcome =
  /** Published again and accepted: removed from the store. */
  | { readonly outcome: 'accepted', readonly topic: string }
  /** Queued again for its webhook subscription: removed once delivered, updated if it fails again. */
  | { readonly outcome: 'redelivering', readonly subscription: string }
  /** Refused again: kept under its id with the new reason. */
  | { readonly outcome: 'refused', readonly error: EventRejectedError }
  /** Its subscription is gone or disabled, or it holds no CloudEvent: kept as it is. */
  | { readonly outcome: 'unredeliverable', readonly why: string }

/**
 * Replay one dead letter, as `POST /api/dlq/:id/replay` and a bulk redrive both do: a
 * `delivery_failed`, `expired` or `queue_full` record goes again to its subscription
 * only; any other runs through the whole pipeline again (origin `http`, its client id
 * kept), and is removed when accepted. A refusal that is not an event's (the broker
 * could not take it) is thrown.
 */
export async function replayEntry (source: ReplaySource, entry: DeadLetterEntry): Promise<ReplayOutcome> {
  const { original } = entry
  const { reason, subscription } = entry.record.data
  if (subscription !== undefined && DELIVERY_REASONS.has(reason)) {
    // the event was accepted once: only its delivery to that subscription is replayed
    const redeliver = source.redeliverers.get(reason)
    const why = redeliver === undefined ? 'webhooks are not running' : redeliver(entry)
    return why === undefined ? { outcome: 'redelivering', subscription } : { outcome: 'unredeliverable', why }
  }
  const refusal = await source.submit(
    { topic: original.topic, payload: original.payload, qos: original.qos, retain: original.retain },
    { origin: 'http', clientId: original.clientId, replayOf: entry.id }
  )
  if (refusal === undefined) {
    await source.deadLetters.delete(entry.id)
    return { outcome: 'accepted', topic: original.topic }
  }
  if (refusal instanceof EventRejectedError) return { outcome: 'refused', error: refusal }
  throw refusal
}
