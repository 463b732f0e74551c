/**
 * The outbox relay against a real broker and a real PostgreSQL server: what it
 * publishes for a row, the claim that keeps each aggregate's order among relays, a
 * refused row, stopping, and table names that are never SQL.
 */
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { test, type TestContext } from 'node:test'
import { expectTypeOf } from 'expect-type'
import pg from 'pg'
import type { Logger } from 'pino'
import { createOutboxRelay, createOutboxTable, createPublisher, outboxTableSql, postgresOutbox, quoteIdentifier, type OutboxLogger, type OutboxPool, type OutboxRelay, type OutboxRelayOptions, type Publisher } from '../../client/index.js'
import { collectMessages, connect, mqttUrl, sample, startBroker, type Received } from '../helpers/broker.js'
import { defer } from '../helpers/cleanup.js'
import { captureLogs } from '../helpers/logs.js'
import { bookingEvents, fillOutbox, outboxRows, type NewRow } from '../helpers/outbox.js'
import { postgresForFile, postgresUnavailable } from '../helpers/postgres.js'

const skip = postgresUnavailable() ?? false
const postgres = postgresForFile()
const SOURCE = '/albergue/outbox-relay'

async function publisherFor (t: TestContext, url: string, clientId = 'outbox-relay'): Promise<Publisher> {
  const publisher = await createPublisher({ url, clientId, source: SOURCE, timeoutMs: 5_000 })
  defer(t, () => publisher.close())
  return publisher
}

function relayFor (t: TestContext, options: OutboxRelayOptions): OutboxRelay {
  const relay = createOutboxRelay(options)
  defer(t, () => relay.stop())
  return relay
}

function events (messages: readonly Received[]): Array<Record<string, unknown>> {
  return messages.map((m) => JSON.parse(m.payload.toString()) as Record<string, unknown>)
}

/** Poll until `check` holds (every 20 ms, at most `timeoutMs`): the outcome is asserted after, never the time. */
async function until (what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!await check()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`)
    await new Promise((resolve) => { setTimeout(resolve, 20) })
  }
}

test('each row becomes one event: the row id, its type and data, the aggregate as subject and partitionkey, created_at as time; marked published', { skip }, async (t) => {
  const [db, broker] = await Promise.all([postgres(), startBroker(t)])
  const rows = [...bookingEvents('b-1', 4), ...bookingEvents('b-2', 4)]
  const ids = await fillOutbox(db.pool, 'outbox_rows', rows)
  const subscriber = await connect(t, mqttUrl(broker))
  await subscriber.subscribeAsync('albergue/#', { qos: 1 })
  const arriving = collectMessages(subscriber, 8)
  const relay = relayFor(t, { publisher: await publisherFor(t, mqttUrl(broker)), source: postgresOutbox({ pool: db.pool, table: 'outbox_rows' }) })

  assert.deepEqual(await relay.runOnce(), { claimed: 8, published: 8, duplicates: 0, rejected: 0, failed: 0, givenUp: 0, held: 0, offline: false })
  const received = events(await arriving)
  const created = await db.pool.query<{ id: string, created_at: Date }>('SELECT id::text, created_at FROM outbox_rows')
  const createdAt = new Map(created.rows.map((r) => [r.id, r.created_at.toISOString()]))
  assert.deepEqual(received.map((e) => e.id).sort(), [...ids].sort())
  for (const event of received) {
    const at = ids.indexOf(String(event.id))
    const row = rows[at]
    assert.ok(row !== undefined)
    assert.deepEqual({ ...event, traceparent: undefined }, {
      specversion: '1.0', id: ids[at], source: SOURCE, type: row.eventType, time: createdAt.get(String(event.id)),
      datacontenttype: 'application/json', subject: row.aggregateId, partitionkey: row.aggregateId, data: row.payload, traceparent: undefined
    })
  }
  // within an aggregate, in created_at order; the two aggregates went out side by side
  for (const booking of ['b-1', 'b-2']) {
    assert.deepEqual(received.filter((e) => e.subject === booking).map((e) => e.id), ids.filter((_, i) => rows[i]?.aggregateId === booking))
  }
  assert.ok((await outboxRows(db.pool, 'outbox_rows')).every((r) => r.published && r.retryCount === 0 && r.lastError === null))
  assert.deepEqual(await relay.runOnce(), { claimed: 0, published: 0, duplicates: 0, rejected: 0, failed: 0, givenUp: 0, held: 0, offline: false })
})

test('a claim skips rows another relay holds, and the rows of an aggregate whose earlier row is held or waiting', { skip }, async (t) => {
  const db = await postgres()
  const row = (aggregateId: string): NewRow => ({ aggregateType: 'booking', aggregateId, eventType: 'albergue.v1.booking.confirmed', payload: { booking_id: aggregateId, pilgrim_id: 'p-1', confirmed_at: '2026-05-01T12:00:00Z' } })
  // created in this order: A1 B1 A2 B2 C1 C2 A3 D1 D2
  const ids = await fillOutbox(db.pool, 'outbox_claims', ['A', 'B', 'A', 'B', 'C', 'C', 'A', 'D', 'D'].map(row))
  const name = ['A1', 'B1', 'A2', 'B2', 'C1', 'C2', 'A3', 'D1', 'D2']
  const named = (batch: { rows: ReadonlyArray<{ id: string }> } | undefined): string[] => (batch?.rows ?? []).map((r) => name[ids.indexOf(r.id)] ?? '?')
  const first = postgresOutbox({ pool: db.pool, table: 'outbox_claims' })
  const second = postgresOutbox({ pool: db.pool, table: 'outbox_claims' })
  const request = { limit: 4, maxAttempts: 3, exclude: [] }

  const a = await first.claim(request)
  assert.deepEqual(named(a), ['A1', 'B1', 'A2', 'B2'])
  const b = await second.claim(request)
  assert.deepEqual(named(b), ['C1', 'C2', 'D1'], 'A3 waits: A1 and A2 are held by the first relay')
  assert.equal(await second.claim(request), undefined, 'D2 waits for D1, held by the second claim')
  await a?.complete({ published: a.rows.map((r) => r.id), failed: [] })
  await b?.abandon()
  const excludeC1 = { ...request, limit: 9, exclude: [ids[4] ?? ''] }
  const c = await first.claim(excludeC1)
  assert.deepEqual(named(c), ['A3', 'D1', 'D2'], 'C1 waits for its retry and holds C2 back')
  await c?.complete({ published: [], failed: (c?.rows ?? []).map((r) => ({ id: r.id, error: 'publish_unanswered: test' })) })
  const states = await outboxRows(db.pool, 'outbox_claims')
  assert.deepEqual(states.map((s) => [s.published, s.retryCount]), [[true, 0], [true, 0], [true, 0], [true, 0], [false, 0], [false, 0], [false, 1], [false, 1], [false, 1]])
})

test('a refused row: retry_count and last_error with reason and field, never marked published, given up at maxAttempts; the rows after it still go, its aggregate\'s once it is given up', { skip }, async (t) => {
  const [db, broker] = await Promise.all([postgres(), startBroker(t)])
  const [bad, held] = bookingEvents('b-1', 2)
  assert.ok(bad !== undefined && held !== undefined)
  const rows = [{ ...bad, payload: { ...(bad.payload as object), nights: 0 } }, held, ...bookingEvents('b-2', 3)]
  const ids = await fillOutbox(db.pool, 'outbox_refused', rows)
  const auditor = await connect(t, mqttUrl(broker))
  await auditor.subscribeAsync('$audit/#', { qos: 1 })
  const audited = collectMessages(auditor, 3 + 4, 20_000)
  const { logger, lines } = captureLogs('info')
  const publisher = await publisherFor(t, mqttUrl(broker))
  const source = postgresOutbox({ pool: db.pool, table: 'outbox_refused' })
  // a relay whose refused rows wait a minute before it tries them again
  const patient = relayFor(t, { publisher, source, maxAttempts: 3, backoff: { initialMs: 60_000, maxMs: 60_000 }, log: logger })

  const first = await patient.runOnce()
  assert.deepEqual(first, { claimed: 5, published: 3, duplicates: 0, rejected: 1, failed: 0, givenUp: 0, held: 1, offline: false }, 'b-1\'s second row waits behind the refused one')
  const [state] = await outboxRows(db.pool, 'outbox_refused')
  assert.deepEqual(state, { id: ids[0], aggregateId: 'b-1', eventType: 'albergue.v1.booking.reserved', published: false, retryCount: 1, lastError: 'schema_validation_failed: /data/nights: must be >= 1' })
  assert.equal((await patient.runOnce()).claimed, 0, 'the refused row waits for its retry, and holds b-1 back meanwhile')

  // another relay does not know of that wait; its own are short
  const relay = relayFor(t, { publisher, source, maxAttempts: 3, pollIntervalMs: 20, backoff: { initialMs: 20, maxMs: 40 }, log: logger })
  relay.start()
  await until('the row after the refused one published', async () => (await outboxRows(db.pool, 'outbox_refused'))[1]?.published === true)
  await relay.stop()
  const states = await outboxRows(db.pool, 'outbox_refused')
  assert.deepEqual(states.map((s) => [s.published, s.retryCount, s.lastError]), [
    [false, 3, 'schema_validation_failed: /data/nights: must be >= 1'], [true, 0, null], [true, 0, null], [true, 0, null], [true, 0, null]
  ])
  // the broker saw b-1's refused row three times, then b-1's next row
  const records = events(await audited).map((r) => [r.outcome, (r.event as { id: string }).id])
  assert.deepEqual(records.filter(([, id]) => id === ids[0] || id === ids[1]), [['rejected', ids[0]], ['rejected', ids[0]], ['rejected', ids[0]], ['accepted', ids[1]]])
  assert.deepEqual(relay.stats(), { batches: relay.stats().batches, failedBatches: 0, published: 1, duplicates: 0, rejected: 2, failed: 0, givenUp: 1 })
  assert.equal((await relay.runOnce()).claimed, 0, 'a given-up row is not claimed again')
  assert.equal(sample(await broker.metrics.metrics(), 'ce_broker_events_total', { outcome: 'rejected', reason: 'schema_validation_failed' }), 3)

  const refusals = lines.filter((l) => l.msg === 'outbox row refused by the broker')
  assert.deepEqual(refusals.map((l) => [l.level, l.rowId, l.attempts, l.error]), [1, 2].map((n) => [40, ids[0], n, 'schema_validation_failed: /data/nights: must be >= 1']))
  assert.deepEqual(lines.filter((l) => String(l.msg).startsWith('outbox row given up')).map((l) => [l.level, l.rowId, l.attempts]), [[40, ids[0], 3]])
})

test('stop() returns once the batch in hand is recorded: every event subscribers got is marked published', { skip }, async (t) => {
  const [db, broker] = await Promise.all([postgres(), startBroker(t)])
  const ids = await fillOutbox(db.pool, 'outbox_stopping', Array.from({ length: 20 }, (_, i) => bookingEvents(`b-${i}`, 10)).flat())
  const subscriber = await connect(t, mqttUrl(broker))
  await subscriber.subscribeAsync('albergue/#', { qos: 1 })
  const seen: string[] = []
  subscriber.on('message', (topic, payload) => { if (topic.startsWith('albergue/')) seen.push(String((JSON.parse(payload.toString()) as { id: string }).id)) })
  const relay = relayFor(t, { publisher: await publisherFor(t, mqttUrl(broker)), source: postgresOutbox({ pool: db.pool, table: 'outbox_stopping' }), batchSize: 50 })
  const first = collectMessages(subscriber, 1)
  relay.start()
  await first
  await relay.stop()
  const published = new Set((await outboxRows(db.pool, 'outbox_stopping')).filter((r) => r.published).map((r) => r.id))
  await drained(subscriber)
  assert.ok(seen.length > 0 && seen.length < ids.length, `stopped mid-way (${seen.length} of ${ids.length})`)
  assert.deepEqual(seen.filter((id) => !published.has(id)), [], 'nothing delivered is left unmarked')
  assert.equal(published.size, seen.length, 'nothing marked that was not delivered')
})

/** Every event the broker accepted so far has reached `subscriber`: a marker published after them comes back after them. */
async function drained (subscriber: Awaited<ReturnType<typeof connect>>): Promise<void> {
  await subscriber.subscribeAsync('outbox-test/marker', { qos: 1 })
  const marker = collectMessages(subscriber, 1)
  await subscriber.publishAsync('outbox-test/marker', 'done', { qos: 1 })
  await marker
}

test('a hostile table name is quoted as PostgreSQL quotes identifiers, never run; names PostgreSQL would change are refused', { skip }, async (t) => {
  const [db, broker] = await Promise.all([postgres(), startBroker(t)])
  await db.pool.query('CREATE TABLE victims (name text); INSERT INTO victims VALUES (\'still here\')')
  const hostile = 'outbox"; DROP TABLE victims; --'
  for (const name of [hostile, 'Outbox', 'my outbox', 'x"y""z', 'élan', 'a'.repeat(63)]) {
    assert.equal(quoteIdentifier(name), pg.escapeIdentifier(name), `quoted as pg quotes ${JSON.stringify(name)}`)
  }
  const ids = await fillOutbox(db.pool, hostile, bookingEvents('b-1', 2))
  const tables = await db.pool.query<{ tablename: string }>('SELECT tablename FROM pg_tables WHERE schemaname = \'public\' AND tablename IN ($1, \'victims\') ORDER BY tablename', [hostile])
  assert.deepEqual(tables.rows.map((r) => r.tablename), [hostile, 'victims'])

  const subscriber = await connect(t, mqttUrl(broker))
  await subscriber.subscribeAsync('albergue/#', { qos: 1 })
  const arriving = collectMessages(subscriber, 2)
  const relay = relayFor(t, { publisher: await publisherFor(t, mqttUrl(broker)), source: postgresOutbox({ pool: db.pool, table: hostile }) })
  assert.equal((await relay.runOnce()).published, 2)
  assert.deepEqual(events(await arriving).map((e) => e.id), ids)
  assert.deepEqual((await db.pool.query('SELECT name FROM victims')).rows, [{ name: 'still here' }])

  await db.pool.query('CREATE SCHEMA "Tenant ""7"""')
  await createOutboxTable(db.pool, 'Outbox', 'Tenant "7"')
  const inSchema = await db.pool.query<{ schemaname: string, tablename: string }>('SELECT schemaname, tablename FROM pg_tables WHERE tablename = \'Outbox\'')
  assert.deepEqual(inSchema.rows, [{ schemaname: 'Tenant "7"', tablename: 'Outbox' }])
  assert.equal(await postgresOutbox({ pool: db.pool, table: 'Outbox', schema: 'Tenant "7"' }).claim({ limit: 1, maxAttempts: 1, exclude: [] }), undefined)

  for (const [name, message] of [['', /table must be a non-empty string/], ['out\u0000box', /holds U\+0000/], ['b'.repeat(64), /is 64 bytes; PostgreSQL would cut it to 63/], ['é'.repeat(32), /is 64 bytes/]] as const) {
    assert.throws(() => postgresOutbox({ pool: db.pool, table: name }), message)
  }
  assert.throws(() => postgresOutbox({ pool: db.pool, table: 'outbox', schema: '' }), /schema must be a non-empty string/)
})

test('a pg Pool and a pino logger fit the relay as they are; bad options are refused by name and value', () => {
  expectTypeOf<pg.Pool>().toMatchTypeOf<OutboxPool>()
  expectTypeOf<Logger>().toMatchTypeOf<OutboxLogger>()
  expectTypeOf<Publisher>().toMatchTypeOf<OutboxRelayOptions['publisher']>()
  const base = { publisher: { publish: async () => ({ id: '', duplicate: false }), client: { connected: true } }, source: { claim: async () => undefined } }
  assert.throws(() => createOutboxRelay({ ...base, batchSize: 0 }), /batchSize must be an integer from 1 to 10000, got 0/)
  assert.throws(() => createOutboxRelay({ ...base, maxAttempts: 1.5 }), /maxAttempts must be an integer from 1 to 1000000, got 1.5/)
  assert.throws(() => createOutboxRelay({ ...base, backoff: { initialMs: 100, maxMs: 50 } }), /backoff.maxMs must be an integer from 100 to 3600000, got 50/)
})

test('the README\'s outbox table is the one createOutboxTable creates', async () => {
  const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8')
  const section = readme.slice(readme.indexOf('### Outbox relay'))
  const documented = /```sql\n([\s\S]*?)```/.exec(section)?.[1]
  assert.ok(documented !== undefined, 'the section shows the table')
  // the same statements, comments, quotes and spacing aside
  const normal = (sql: string): string => sql.replace(/--[^\n]*/g, '').replaceAll('"', '').replace(/\s+/g, ' ').trim()
  assert.equal(normal(documented), normal(outboxTableSql('outbox')))
})
