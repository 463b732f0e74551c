import pg from 'pg'
import { createOutboxTable } from '../../client/index.js'

/** A row to put in an outbox table. */
export interface NewRow {
  readonly aggregateType: string
  readonly aggregateId: string
  readonly eventType: string
  readonly payload: unknown
}

/** What the relay left in a row. */
export interface RowState {
  readonly id: string
  readonly aggregateId: string
  readonly eventType: string
  readonly published: boolean
  readonly retryCount: number
  readonly lastError: string | null
}

/** The events of one booking, in the order its service writes them: valid data for the bundled albergue schemas. */
export function bookingEvents (bookingId: string, count: number): NewRow[] {
  const at = '2026-05-01T12:00:00Z'
  const kinds: Array<[string, Record<string, unknown>]> = [
    ['albergue.v1.booking.reserved', { booking_id: bookingId, pilgrim_id: 'p-2002', check_in_date: '2026-05-01', check_out_date: '2026-05-02', nights: 1, total_amount: 12.5, expires_at: '2026-04-30T20:00:00Z' }],
    ['albergue.v1.payment.recorded', { payment_id: `pay-${bookingId}`, booking_id: bookingId, amount: 12.5, currency: 'EUR', method: 'card', recorded_at: at }],
    ['albergue.v1.booking.confirmed', { booking_id: bookingId, pilgrim_id: 'p-2002', confirmed_at: at }],
    ['albergue.v1.booking.bed_assigned', { booking_id: bookingId, bed_id: 'bed-7', room: 'A', assigned_at: at }]
  ]
  return Array.from({ length: count }, (_, i) => {
    const [eventType, payload] = kinds[i % kinds.length] ?? kinds[0] ?? ['', {}]
    return { aggregateType: 'booking', aggregateId: bookingId, eventType, payload }
  })
}

/** Create the table (the documented layout) and insert `rows`, `created_at` one millisecond apart in the given order; the ids of the table's rows, oldest first. */
export async function fillOutbox (pool: pg.Pool, table: string, rows: readonly NewRow[]): Promise<string[]> {
  await createOutboxTable(pool, table)
  const start = Date.now()
  await pool.query(
    `INSERT INTO ${pg.escapeIdentifier(table)} (aggregate_type, aggregate_id, event_type, payload, created_at)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::timestamptz[])`,
    [rows.map((r) => r.aggregateType), rows.map((r) => r.aggregateId), rows.map((r) => r.eventType), rows.map((r) => JSON.stringify(r.payload)), rows.map((_, i) => new Date(start + i))]
  )
  return (await outboxRows(pool, table)).map((r) => r.id)
}

/** Every row, oldest first. */
export async function outboxRows (pool: pg.Pool, table: string): Promise<RowState[]> {
  const result = await pool.query<{ id: string, aggregate_id: string, event_type: string, published: boolean, retry_count: number, last_error: string | null }>(
    `SELECT id::text, aggregate_id, event_type, published_at IS NOT NULL AS published, retry_count, last_error FROM ${pg.escapeIdentifier(table)} ORDER BY created_at, id`)
  return result.rows.map((r) => ({ id: r.id, aggregateId: r.aggregate_id, eventType: r.event_type, published: r.published, retryCount: r.retry_count, lastError: r.last_error }))
}
