import type { BatchOutcome, ClaimRequest, OutboxBatch, OutboxRow, OutboxSource } from './outbox-source.js'

/** A connection taken from the pool: a `pg` `PoolClient` fits. */
export interface OutboxPoolClient {
  query: (text: string, values?: unknown[]) => Promise<{ readonly rows: readonly unknown[] }>
  /** Given an error, the connection is closed instead of going back to the pool. */
  release: (err?: Error) => void
}

/** What the relay needs of a PostgreSQL pool: a `pg` `Pool` fits, and this library does not load `pg` itself. */
export interface OutboxPool {
  connect: () => Promise<OutboxPoolClient>
}

export interface PostgresOutboxOptions {
  readonly pool: OutboxPool
  /** The outbox table's name, as it is: quoted, so `Outbox` and `my-outbox` are taken literally. */
  readonly table: string
  /** Its schema (default: the connection's `search_path`). */
  readonly schema?: string
}

/** PostgreSQL cuts longer identifiers to 63 bytes, which would name another table. */
const MAX_IDENTIFIER_BYTES = 63

/**
 * An identifier as a quoted SQL identifier (`"…"`, inner quotes doubled, as PostgreSQL
 * reads it): whatever the name holds, it names a table and is never SQL. Refuses what
 * PostgreSQL would not keep as given: empty, U+0000, longer than 63 bytes.
 */
export function quoteIdentifier (name: string, what = 'identifier'): string {
  if (typeof name !== 'string' || name === '') throw new TypeError(`${what} must be a non-empty string, got ${JSON.stringify(name)}`)
  if (name.includes('\u0000')) throw new TypeError(`${what} ${JSON.stringify(name)} holds U+0000, which a PostgreSQL identifier cannot`)
  const bytes = new TextEncoder().encode(name).length
  if (bytes > MAX_IDENTIFIER_BYTES) throw new TypeError(`${what} ${JSON.stringify(name)} is ${bytes} bytes; PostgreSQL would cut it to ${MAX_IDENTIFIER_BYTES} and name another table`)
  return `"${name.replaceAll('"', '""')}"`
}

function tableName (table: string, schema: string | undefined): string {
  const quoted = quoteIdentifier(table, 'table')
  return schema === undefined ? quoted : `${quoteIdentifier(schema, 'schema')}.${quoted}`
}

/**
 * The outbox of a PostgreSQL table laid out as `outboxTableSql()` creates it. A batch
 * is one transaction: `SELECT … FOR UPDATE SKIP LOCKED` claims the oldest rows no
 * other relay holds, the relay publishes them, then their outcome is written and the
 * transaction committed. A relay that dies mid-batch leaves its rows unmarked: the
 * transaction rolls back and the rows are claimed again.
 */
export function postgresOutbox (options: PostgresOutboxOptions): OutboxSource {
  const { pool } = options
  const table = tableName(options.table, options.schema)
  // Of the oldest unclaimed rows, those whose aggregate has no earlier row still to
  // publish outside this batch (held by another relay, or waiting for its retry): an
  // aggregate's events go out in order even with several relays. Rows that reached
  // maxAttempts no longer hold their aggregate back.
  const claimSql = `WITH claimed AS (
  SELECT id, aggregate_type, aggregate_id, event_type, payload, created_at, retry_count
  FROM ${table}
  WHERE published_at IS NULL AND retry_count < $1 AND NOT (id = ANY($3))
  ORDER BY created_at, id
  LIMIT $2
  FOR UPDATE SKIP LOCKED
)
SELECT c.id::text AS id, c.aggregate_type, c.aggregate_id, c.event_type, c.payload, c.created_at, c.retry_count
FROM claimed c
WHERE NOT EXISTS (
  SELECT 1 FROM ${table} e
  WHERE e.aggregate_type = c.aggregate_type AND e.aggregate_id = c.aggregate_id
    AND e.published_at IS NULL AND e.retry_count < $1
    AND (e.created_at, e.id) < (c.created_at, c.id)
    AND e.id NOT IN (SELECT id FROM claimed)
)
ORDER BY c.created_at, c.id`
  const publishedSql = `UPDATE ${table} SET published_at = clock_timestamp() WHERE id = ANY($1)`
  const failedSql = `UPDATE ${table} SET retry_count = retry_count + 1, last_error = $2 WHERE id = $1`

  return {
    async claim (request: ClaimRequest): Promise<OutboxBatch | undefined> {
      const client = await pool.connect()
      let rows: OutboxRow[]
      try {
        await client.query('BEGIN')
        const result = await client.query(claimSql, [request.maxAttempts, request.limit, [...request.exclude]])
        rows = result.rows.map(toRow)
      } catch (err: unknown) {
        await rollback(client, err)
        throw err
      }
      if (rows.length === 0) {
        await rollback(client, undefined)
        return undefined
      }
      let open = true
      return {
        rows,
        async complete (outcome: BatchOutcome): Promise<void> {
          if (!open) throw new Error('this outbox batch was already completed or abandoned')
          open = false
          try {
            if (outcome.published.length > 0) await client.query(publishedSql, [[...outcome.published]])
            for (const { id, error } of outcome.failed) await client.query(failedSql, [id, error])
            await client.query('COMMIT')
          } catch (err: unknown) {
            await rollback(client, err)
            throw err
          }
          client.release()
        },
        async abandon (err?: Error): Promise<void> {
          if (!open) return
          open = false
          await rollback(client, err)
        }
      }
    }
  }
}

/**
 * Roll back and give the connection back; after an error it is closed instead, since
 * it may be broken mid-protocol. A failed rollback closes it too: the server rolls the
 * transaction back when the connection goes.
 */
async function rollback (client: OutboxPoolClient, cause: unknown): Promise<void> {
  try {
    await client.query('ROLLBACK')
  } catch (err: unknown) {
    client.release(err instanceof Error ? err : new Error(String(err)))
    return
  }
  client.release(cause === undefined ? undefined : cause instanceof Error ? cause : new Error(String(cause)))
}

function toRow (raw: unknown): OutboxRow {
  if (typeof raw !== 'object' || raw === null) throw new TypeError(`the outbox query returned a row that is not an object: ${String(raw)}`)
  const field = (name: string): unknown => Reflect.get(raw, name)
  // a column a table of its own left nullable: the relay refuses an empty event type itself
  const text = (name: string): string => {
    const value = field(name)
    return value === null || value === undefined ? '' : String(value)
  }
  const created = field('created_at')
  return {
    id: text('id'),
    aggregateType: text('aggregate_type'),
    aggregateId: text('aggregate_id'),
    eventType: text('event_type'),
    payload: field('payload'),
    createdAt: created instanceof Date ? created : new Date(text('created_at')),
    retryCount: Number(field('retry_count') ?? 0)
  }
}

/** A name derived from the table's for one of its indexes, cut so that it stays within PostgreSQL's 63 bytes. */
function indexName (table: string, suffix: string): string {
  let base = table
  while (new TextEncoder().encode(`${base}${suffix}`).length > MAX_IDENTIFIER_BYTES) base = base.slice(0, -1)
  return quoteIdentifier(`${base}${suffix}`, 'index')
}

/**
 * The outbox table's layout, for a migration: `id` the event id, `event_type` its type,
 * `payload` its data, `aggregate_id` its subject; the relay fills `published_at`,
 * `retry_count` and `last_error`. Two partial indexes keep the claim cheap however many
 * published rows stay: the pending rows in order, and per aggregate.
 */
export function outboxTableSql (table: string, schema?: string): string {
  const name = tableName(table, schema)
  return `CREATE TABLE IF NOT EXISTS ${name} (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  aggregate_type text NOT NULL,
  aggregate_id text NOT NULL,
  event_type text NOT NULL,
  payload jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  published_at timestamptz,
  retry_count integer NOT NULL DEFAULT 0,
  last_error text
);
CREATE INDEX IF NOT EXISTS ${indexName(table, '_pending')} ON ${name} (created_at, id) WHERE published_at IS NULL;
CREATE INDEX IF NOT EXISTS ${indexName(table, '_pending_by_aggregate')} ON ${name} (aggregate_type, aggregate_id, created_at, id) WHERE published_at IS NULL;
`
}

/** Create the outbox table and its indexes when they do not exist (`outboxTableSql()`). */
export async function createOutboxTable (pool: OutboxPool, table: string, schema?: string): Promise<void> {
  const sql = outboxTableSql(table, schema)
  const client = await pool.connect()
  try {
    await client.query(sql)
  } finally {
    client.release()
  }
}
