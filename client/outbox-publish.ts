import { EventRejectedError, PublishUnansweredError } from './errors.js'
import type { EventOptions } from './event.js'
import type { Published } from './publisher.js'
import type { OutboxRow } from './outbox-source.js'

/** What the relay needs of a publisher: `createPublisher()`'s, untyped (rows carry any type). */
export interface RelayPublisher {
  publish: (type: string, data: unknown, options: EventOptions) => Promise<Published>
  /** Read before each batch: while the broker is away the relay claims nothing and waits. */
  readonly client: { readonly connected: boolean }
}

/** What became of one row's publish. */
export type RowOutcome =
  | { readonly row: OutboxRow, readonly kind: 'published', readonly duplicate: boolean }
  | { readonly row: OutboxRow, readonly kind: 'rejected' | 'failed', readonly error: string }

/**
 * Publish a batch keeping each aggregate's order: the rows of one aggregate one after
 * the other, the first failure leaving its later rows for a later batch (an event is
 * never delivered before an earlier one of its aggregate); different aggregates at once.
 * Never rejects: each row's failure is its outcome.
 */
export async function publishInOrder (rows: readonly OutboxRow[], publisher: RelayPublisher): Promise<RowOutcome[]> {
  const chains = new Map<string, OutboxRow[]>()
  for (const row of rows) {
    // NUL cannot occur in PostgreSQL text, so the key cannot be faked by an id holding the separator
    const key = `${row.aggregateType}\u0000${row.aggregateId}`
    const chain = chains.get(key)
    if (chain === undefined) chains.set(key, [row])
    else chain.push(row)
  }
  const outcomes: RowOutcome[] = []
  await Promise.all([...chains.values()].map(async (chain) => {
    for (const row of chain) {
      const outcome = await publishRow(row, publisher)
      outcomes.push(outcome)
      if (outcome.kind !== 'published') return
    }
  }))
  return outcomes
}

async function publishRow (row: OutboxRow, publisher: RelayPublisher): Promise<RowOutcome> {
  if (row.eventType === '') return { row, kind: 'rejected', error: 'invalid_row: event_type is empty' }
  try {
    const { duplicate } = await publisher.publish(row.eventType, row.payload, {
      id: row.id,
      // an unreadable created_at leaves the time to the publisher (now) rather than failing the row
      ...(Number.isNaN(row.createdAt.getTime()) ? {} : { time: row.createdAt }),
      ...(row.aggregateId === '' ? {} : { subject: row.aggregateId, extensions: { partitionkey: row.aggregateId } })
    })
    return { row, kind: 'published', duplicate }
  } catch (err: unknown) {
    if (err instanceof EventRejectedError) {
      const fields = err.errors.map((e) => e.path === '' ? e.message : `${e.path}: ${e.message}`).join('; ')
      return { row, kind: 'rejected', error: fields === '' ? err.reason : `${err.reason}: ${fields}` }
    }
    if (err instanceof PublishUnansweredError) return { row, kind: 'failed', error: `publish_unanswered: ${err.message}` }
    return { row, kind: 'failed', error: `publish_failed: ${err instanceof Error ? err.message : String(err)}` }
  }
}
