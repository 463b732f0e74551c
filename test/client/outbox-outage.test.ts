/**
 * The outbox relay when what it talks to goes away: the broker closed mid-run and
 * started again on its port, the table gone for a while; and the runnable example
 * (examples/outbox-relay.ts) against a real broker and PostgreSQL.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createServer, type Socket } from 'node:net'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { fileURLToPath } from 'node:url'
import mqttPacket, { type Packet } from 'mqtt-packet'
import type { AuditRecord } from '../../plugins/audit/index.js'
import { createOutboxRelay, createPublisher, postgresOutbox, type OutboxRelay, type OutboxRelayOptions } from '../../client/index.js'
import { collectMessages, connect, mqttUrl, startBroker } from '../helpers/broker.js'
import { defer } from '../helpers/cleanup.js'
import { captureLogs } from '../helpers/logs.js'
import { freePort } from '../helpers/net.js'
import { bookingEvents, fillOutbox, outboxRows } from '../helpers/outbox.js'
import { postgresForFile, postgresUnavailable } from '../helpers/postgres.js'
import { silentMqttServer } from '../helpers/silent-mqtt.js'

const skip = postgresUnavailable() ?? false
const postgres = postgresForFile()
const ROOT = fileURLToPath(new URL('../../', import.meta.url))

function relayFor (t: TestContext, options: OutboxRelayOptions): OutboxRelay {
  const relay = createOutboxRelay(options)
  defer(t, () => relay.stop())
  return relay
}

/** Poll until `check` holds (every 20 ms, at most 20 s): the outcome is asserted after, never the time. */
async function until (what: string, check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 20_000
  while (!await check()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within 20 s`)
    await new Promise((resolve) => { setTimeout(resolve, 20) })
  }
}

async function auditFile (t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ce-broker-outbox-audit-'))
  defer(t, () => rm(dir, { recursive: true, force: true }))
  return join(dir, 'audit.jsonl')
}

/** The ids a broker accepted, from its audit file (a duplicate is an event it had accepted). */
async function acceptedIds (file: string): Promise<Set<string>> {
  const text = await readFile(file, 'utf8')
  const records = text.split('\n').filter((line) => line !== '').map((line) => JSON.parse(line) as AuditRecord)
  return new Set(records.filter((r) => r.outcome === 'accepted' || r.outcome === 'duplicate').map((r) => r.event.id ?? ''))
}

test('the broker closed mid-run: the relay claims nothing while it is away, then publishes every row once it is back; nothing is marked that no broker accepted', { skip }, async (t) => {
  const db = await postgres()
  const ids = await fillOutbox(db.pool, 'outbox_broker_away', Array.from({ length: 30 }, (_, i) => bookingEvents(`b-${i}`, 10)).flat())
  const port = await freePort()
  const [firstAudit, secondAudit] = [await auditFile(t), await auditFile(t)]
  const first = await startBroker(t, { mqtt: { port }, audit: { file: firstAudit } })
  const subscriber = await connect(t, mqttUrl(first))
  await subscriber.subscribeAsync('albergue/#', { qos: 1 })
  const early = collectMessages(subscriber, 50)
  const publisher = await createPublisher({ url: mqttUrl(first), clientId: 'outbox-relay', source: '/albergue/outbox-relay', timeoutMs: 500, mqtt: { reconnectPeriod: 100 } })
  defer(t, () => publisher.close())
  const { logger, lines } = captureLogs('info')
  const relay = relayFor(t, { publisher, source: postgresOutbox({ pool: db.pool, table: 'outbox_broker_away' }), batchSize: 20, pollIntervalMs: 20, backoff: { initialMs: 50, maxMs: 200 }, log: logger })
  relay.start()

  await early
  await first.close()
  await until('the relay waiting for the broker', () => lines.some((l) => l.msg === 'outbox relay waits for the broker' && l.offline === true))
  const markedWhileAway = (await outboxRows(db.pool, 'outbox_broker_away')).filter((r) => r.published).length
  assert.ok(markedWhileAway < ids.length, 'the broker went away before the relay was done')

  const second = await startBroker(t, { mqtt: { port }, audit: { file: secondAudit } })
  await until('every row published', async () => (await outboxRows(db.pool, 'outbox_broker_away')).every((r) => r.published))
  await relay.stop()
  await second.close()

  const accepted = new Set([...await acceptedIds(firstAudit), ...await acceptedIds(secondAudit)])
  const rows = await outboxRows(db.pool, 'outbox_broker_away')
  assert.deepEqual(rows.filter((r) => !accepted.has(r.id)).map((r) => r.id), [], 'every row marked published was accepted by a broker')
  assert.ok((await acceptedIds(secondAudit)).size > 0, 'the rest went to the broker that came back')
  // a publish the outage left unanswered counts as an attempt, with its reason
  assert.ok(rows.every((r) => r.retryCount === 0 ? r.lastError === null : r.lastError?.startsWith('publish_unanswered: ')), JSON.stringify(rows.filter((r) => r.retryCount > 0)))
})

test('a publish no answer comes for counts as an attempt, `publish_unanswered` in last_error; the row stays unpublished and the relay backs off', { skip }, async (t) => {
  const db = await postgres()
  const ids = await fillOutbox(db.pool, 'outbox_unanswered', [...bookingEvents('b-1', 2), ...bookingEvents('b-2', 2)])
  const publisher = await createPublisher({ url: `mqtt://127.0.0.1:${(await silentMqttServer(t)).port}`, clientId: 'outbox-relay', source: '/albergue/outbox-relay', timeoutMs: 200 })
  defer(t, () => publisher.close())
  const relay = relayFor(t, { publisher, source: postgresOutbox({ pool: db.pool, table: 'outbox_unanswered' }), maxAttempts: 2 })

  assert.deepEqual(await relay.runOnce(), { claimed: 4, published: 0, duplicates: 0, rejected: 0, failed: 2, givenUp: 0, held: 2, offline: false })
  const rows = await outboxRows(db.pool, 'outbox_unanswered')
  assert.deepEqual(rows.map((r) => [r.published, r.retryCount, r.lastError]), [
    [false, 1, `publish_unanswered: event ${ids[0]}: no answer within 200 ms; it may have been accepted, publish it again with the same id to know`],
    [false, 0, null],
    [false, 1, `publish_unanswered: event ${ids[2]}: no answer within 200 ms; it may have been accepted, publish it again with the same id to know`],
    [false, 0, null]
  ])

  // run in a loop, a batch with nothing but unanswered publishes makes the relay wait as for an absent broker
  const { logger, lines } = captureLogs('info')
  const looping = relayFor(t, { publisher, source: postgresOutbox({ pool: db.pool, table: 'outbox_unanswered' }), maxAttempts: 2, backoff: { initialMs: 20, maxMs: 50 }, log: logger })
  looping.start()
  await until('the relay waiting', () => lines.some((l) => l.msg === 'outbox relay waits for the broker'))
  await looping.stop()
  assert.deepEqual(lines.filter((l) => l.msg === 'outbox relay waits for the broker').map((l) => [l.offline, l.failed]), [[false, 2]])
})

test('a batch that fails (the table gone for a while) is reported to onError and logged; the relay waits and goes on', { skip }, async (t) => {
  const db = await postgres()
  const broker = await startBroker(t)
  await fillOutbox(db.pool, 'outbox_table_away', bookingEvents('b-1', 4))
  await db.pool.query('ALTER TABLE outbox_table_away RENAME TO outbox_table_elsewhere')
  const publisher = await createPublisher({ url: mqttUrl(broker), clientId: 'outbox-relay', source: '/albergue/outbox-relay' })
  defer(t, () => publisher.close())
  const errors: Error[] = []
  const { logger, lines } = captureLogs('info')
  const relay = relayFor(t, {
    publisher, source: postgresOutbox({ pool: db.pool, table: 'outbox_table_away' }), pollIntervalMs: 20, backoff: { initialMs: 20, maxMs: 50 }, log: logger, onError: (err) => { errors.push(err) }
  })
  relay.start()
  await until('two failed batches', () => errors.length >= 2)
  await db.pool.query('ALTER TABLE outbox_table_elsewhere RENAME TO outbox_table_away')
  await until('every row published', async () => (await outboxRows(db.pool, 'outbox_table_away')).every((r) => r.published))
  await relay.stop()

  assert.match(errors[0]?.message ?? '', /relation "outbox_table_away" does not exist/)
  assert.ok(relay.stats().failedBatches >= 2)
  assert.equal(relay.stats().published, 4)
  // the first failure of a run is a warning; the ones after it, while it lasts, are not
  const warnings = lines.filter((l) => l.msg === 'outbox batch failed')
  assert.equal(warnings.length, 1)
  assert.equal(warnings[0]?.level, 40)
  assert.match(String((warnings[0]?.err as { message?: string } | undefined)?.message), /does not exist/)
})

test('the example relay (examples/outbox-relay.ts) publishes an outbox table\'s rows and stops on SIGTERM', { skip }, async (t) => {
  const db = await postgres()
  const broker = await startBroker(t)
  const ids = await fillOutbox(db.pool, 'outbox_example', [...bookingEvents('b-1', 3), ...bookingEvents('b-2', 3)])
  const subscriber = await connect(t, mqttUrl(broker))
  await subscriber.subscribeAsync('albergue/#', { qos: 1 })
  const arriving = collectMessages(subscriber, 6, 20_000)
  const child = spawn(process.execPath, ['--import', 'tsx', 'examples/outbox-relay.ts'], {
    cwd: ROOT,
    env: { ...process.env, BROKER_URL: mqttUrl(broker), DATABASE_URL: db.url, OUTBOX_TABLE: 'outbox_example' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  defer(t, () => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const exited = new Promise<number | null>((resolve) => { child.once('close', (code) => { resolve(code) }) })

  const events = (await arriving).map((m) => JSON.parse(m.payload.toString()) as { id: string, source: string })
  assert.deepEqual(events.map((e) => e.id).sort(), [...ids].sort())
  assert.ok(events.every((e) => e.source === '/albergue/outbox'))
  await until('every row marked published', async () => (await outboxRows(db.pool, 'outbox_example')).every((r) => r.published))
  child.kill('SIGTERM')
  assert.equal(await exited, 0, output)
  const logged = output.trim().split('\n').map((line) => (JSON.parse(line) as { msg: string }).msg)
  assert.deepEqual([logged[0], logged.at(-1)], ['outbox relay started', 'outbox relay stopped'])
})
