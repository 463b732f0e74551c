/**
 * An outbox relay: publishes the rows of a PostgreSQL outbox table to ce-broker, each
 * once the broker accepted it, and marks them published. Run as many as you like; they
 * share the rows.
 *
 *   BROKER_URL=mqtt://127.0.0.1:1883 DATABASE_URL=postgres://app@127.0.0.1/app \
 *   OUTBOX_TABLE=outbox node --import tsx examples/outbox-relay.ts
 */
import { hostname } from 'node:os'
import pg from 'pg'
import { pino } from 'pino'
import { createOutboxRelay, createOutboxTable, createPublisher, postgresOutbox } from 'ce-broker/client'

const table = process.env.OUTBOX_TABLE ?? 'outbox'
const log = pino({ name: 'outbox-relay' })
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres' })
// usually a migration's job; harmless when the table is there
await createOutboxTable(pool, table)

const publisher = await createPublisher({
  url: process.env.BROKER_URL ?? 'mqtt://127.0.0.1:1883',
  // one per process: the broker tells each connection of its own refused events
  clientId: `outbox-relay-${hostname()}-${process.pid}`,
  // the same for every relay of this outbox: with the row id, the key the broker drops duplicates by
  source: '/albergue/outbox',
  timeoutMs: 10_000
})
const relay = createOutboxRelay({ publisher, source: postgresOutbox({ pool, table }), log })
relay.start()

async function shutdown (): Promise<void> {
  await relay.stop() // the batch in hand is published and recorded first
  await publisher.close()
  await pool.end()
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    shutdown().then(() => { log.info('outbox relay stopped') }, (err: unknown) => {
      log.error({ err }, 'outbox relay did not stop cleanly')
      process.exitCode = 1
    })
  })
}
