import assert from 'node:assert/strict'
import { once } from 'node:events'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { Redis } from 'ioredis'
import { compileRedactor, type AuditRecord } from '../../plugins/audit/index.js'
import { collectMessages, connect, httpUrl, mqttUrl, sample, startBroker } from '../helpers/broker.js'
import { defer } from '../helpers/cleanup.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved } from '../helpers/events.js'
import { redisUnavailable, startRedis } from '../helpers/redis.js'

async function tempFile (t: TestContext, name: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ce-broker-audit-'))
  defer(t, async () => { await rm(dir, { recursive: true, force: true }) })
  return join(dir, name)
}

function parse (payload: Buffer | string): AuditRecord {
  return JSON.parse(payload.toString()) as AuditRecord
}

test('every publish on a validated topic gets one audit record per outcome, on $audit/<topic> and in the file', async (t) => {
  const file = await tempFile(t, 'audit.jsonl')
  const broker = await startBroker(t, { nodeId: 'node-a', audit: { file } })
  const auditor = await connect(t, mqttUrl(broker))
  await auditor.subscribeAsync('$audit/#', { qos: 1 })
  const publisher = await connect(t, mqttUrl(broker), { clientId: 'booking-service' })

  const accepted = bookingReserved()
  const rejected = bookingReserved({ nights: 0 })
  const marker = bookingReserved()
  const arrived = collectMessages(auditor, 4)
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(accepted), { qos: 1, retain: true })
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(accepted), { qos: 1 })
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(rejected), { qos: 0 })
  // a plain topic is not audited, nor is what the audit publishes itself: the next record is the marker's
  await publisher.publishAsync('hostel/lights', 'on', { qos: 1 })
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(marker), { qos: 1 })
  const messages = await arrived

  assert.ok(messages.every((m) => m.topic === `$audit/${BOOKING_RESERVED_TOPIC}`))
  const records = messages.map((m) => parse(m.payload))
  assert.deepEqual(records.map((r) => [r.outcome, r.reason, r.event.id]), [
    ['accepted', undefined, accepted.id],
    ['duplicate', undefined, accepted.id],
    ['rejected', 'schema_validation_failed', rejected.id],
    ['accepted', undefined, marker.id]
  ])
  const [first] = records
  assert.ok(first !== undefined && !Number.isNaN(Date.parse(first.at)))
  assert.deepEqual({ ...first, at: 'checked' }, {
    at: 'checked',
    node: 'node-a',
    outcome: 'accepted',
    clientId: 'booking-service',
    topic: BOOKING_RESERVED_TOPIC,
    qos: 1,
    retain: true,
    event: { id: accepted.id, type: accepted.type, source: accepted.source, time: accepted.time, schemaVersion: 1 },
    payload: accepted
  })
  assert.deepEqual(records[2]?.payload, rejected, 'a rejected event is audited with what was sent')
  assert.equal(records[2]?.qos, 0)

  await broker.close()
  const metrics = await broker.metrics.metrics()
  assert.equal(sample(metrics, 'ce_broker_audit_records_total', { sink: 'topic', result: 'written' }), 4)
  assert.equal(sample(metrics, 'ce_broker_audit_records_total', { sink: 'file', result: 'written' }), 4)
  assert.equal(sample(metrics, 'ce_broker_audit_records_total', { sink: 'file', result: 'failed' }), undefined)
  const lines = (await readFile(file, 'utf8')).split('\n')
  assert.equal(lines.pop(), '', 'the file ends with a newline')
  assert.deepEqual(lines.map((line) => parse(line)), records, 'the file holds the same records, one per line')
})

test('audit.redact replaces values in every record; audit.payload: false leaves the event out', async (t) => {
  const file = await tempFile(t, 'audit.jsonl')
  const broker = await startBroker(t, { audit: { file, redact: ['data.pilgrim_id', 'source'] } })
  const auditor = await connect(t, mqttUrl(broker))
  await auditor.subscribeAsync('$audit/#', { qos: 1 })
  const publisher = await connect(t, mqttUrl(broker))
  const event = bookingReserved()
  const arrived = collectMessages(auditor, 1)
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })
  const [record] = (await arrived).map((m) => parse(m.payload))
  const data = event.data as Record<string, unknown>
  assert.deepEqual(record?.event, { id: event.id, type: event.type, source: '[redacted]', time: event.time, schemaVersion: 1 })
  assert.deepEqual(record?.payload, { ...event, source: '[redacted]', data: { ...data, pilgrim_id: '[redacted]' } })
  await broker.close()
  assert.ok(!(await readFile(file, 'utf8')).includes(String(data.pilgrim_id)), 'the file never holds a redacted value')

  const bare = await startBroker(t, { audit: { payload: false } })
  const auditsBare = await connect(t, mqttUrl(bare))
  await auditsBare.subscribeAsync('$audit/#', { qos: 1 })
  const publishesBare = await connect(t, mqttUrl(bare))
  const bareArrived = collectMessages(auditsBare, 1)
  await publishesBare.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })
  const [bareRecord] = (await bareArrived).map((m) => parse(m.payload))
  assert.equal(bareRecord?.payload, undefined)
  assert.equal(bareRecord?.event.id, event.id)
})

test('audit.topic: false keeps the log and publishes nothing on $audit', async (t) => {
  const file = await tempFile(t, 'audit.jsonl')
  const broker = await startBroker(t, { audit: { file, topic: false } })
  const watcher = await connect(t, mqttUrl(broker))
  await watcher.subscribeAsync(['$audit/#', 'albergue/#'], { qos: 1 })
  const publisher = await connect(t, mqttUrl(broker))
  const event = bookingReserved()
  // the record would be published before the event is routed: the first message tells
  const first = collectMessages(watcher, 1)
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })
  assert.equal((await first)[0]?.topic, BOOKING_RESERVED_TOPIC)
  await broker.close()
  const lines = (await readFile(file, 'utf8')).trim().split('\n').map((line) => parse(line))
  assert.deepEqual(lines.map((r) => [r.outcome, r.event.id]), [['accepted', event.id]])
})

test('the live mirror is published only while a subscription may receive it; the log gets every record', async (t) => {
  const file = await tempFile(t, 'audit.jsonl')
  const broker = await startBroker(t, { audit: { file } })
  const publisher = await connect(t, mqttUrl(broker))
  const watcher = await connect(t, mqttUrl(broker))
  // a filter starting with # or + does not match $ topics: still nobody for $audit
  await watcher.subscribeAsync('#', { qos: 1 })
  const unseen = bookingReserved()
  const routed = collectMessages(watcher, 1)
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(unseen), { qos: 1 })
  assert.equal((await routed)[0]?.topic, BOOKING_RESERVED_TOPIC)

  const auditor = await connect(t, mqttUrl(broker))
  await auditor.subscribeAsync(`$audit/${BOOKING_RESERVED_TOPIC}`, { qos: 1 })
  const seen = bookingReserved()
  const mirrored = collectMessages(auditor, 1)
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(seen), { qos: 1 })
  assert.deepEqual((await mirrored).map((m) => parse(m.payload).event.id), [seen.id])

  await auditor.unsubscribeAsync(`$audit/${BOOKING_RESERVED_TOPIC}`)
  const afterUnsubscribe = bookingReserved()
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(afterUnsubscribe), { qos: 1 })

  // a subscriber that leaves takes its interest with it
  const leaving = await connect(t, mqttUrl(broker), { clientId: 'leaving-auditor' })
  await leaving.subscribeAsync('$audit/#', { qos: 1 })
  const gone = once(broker.aedes, 'clientDisconnect')
  leaving.end()
  await gone
  const afterLeaving = bookingReserved()
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(afterLeaving), { qos: 1 })
  await broker.close()

  const metrics = await broker.metrics.metrics()
  assert.equal(sample(metrics, 'ce_broker_audit_records_total', { sink: 'topic', result: 'written' }), 1, 'one record was mirrored')
  const lines = (await readFile(file, 'utf8')).trim().split('\n').map((line) => parse(line))
  assert.deepEqual(lines.map((r) => r.event.id), [unseen.id, seen.id, afterUnsubscribe.id, afterLeaving.id])
})

test('records stay one valid JSON line whatever the strings hold: quotes, backslashes, controls, accents, emoji', async (t) => {
  const file = await tempFile(t, 'audit.jsonl')
  const broker = await startBroker(t, { audit: { file } })
  const auditor = await connect(t, mqttUrl(broker))
  await auditor.subscribeAsync('$audit/#', { qos: 1 })
  const clientId = 'recepción "norte" \\ 🐚'
  const publisher = await connect(t, mqttUrl(broker), { clientId })
  const odd = bookingReserved({}, { id: 'id-"quoted"\\\ttab-ñ-🐚' })
  // pretty-printed: its line breaks must not split the log's line
  const pretty = bookingReserved()
  const arrived = collectMessages(auditor, 2)
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(odd), { qos: 1 })
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(pretty, null, 2), { qos: 1 })
  const mirrored = (await arrived).map((m) => parse(m.payload))
  await broker.close()

  const lines = (await readFile(file, 'utf8')).trim().split('\n').map((line) => parse(line))
  assert.deepEqual(lines, mirrored)
  assert.deepEqual(lines.map((r) => [r.outcome, r.clientId, r.event.id, r.event.source]), [
    ['accepted', clientId, odd.id, odd.source],
    ['accepted', clientId, pretty.id, pretty.source]
  ])
  assert.deepEqual(lines.map((r) => r.payload), [odd, pretty])
})

test('a burst larger than one write buffer reaches the log whole: every record once, in order', async (t) => {
  const file = await tempFile(t, 'audit.jsonl')
  const broker = await startBroker(t, { audit: { file } })
  const publisher = await connect(t, mqttUrl(broker))
  // about 1.4 MB of records: more than the 1 MiB the writer fills before starting another
  const events = Array.from({ length: 1200 }, (_, i) => bookingReserved({ booking_id: `b-${i}` }))
  for (const event of events) publisher.publish(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 0 })
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved()), { qos: 1 })
  await broker.close()

  const lines = (await readFile(file, 'utf8')).trim().split('\n').map((line) => parse(line))
  assert.deepEqual(lines.slice(0, events.length).map((r) => r.event.id), events.map((e) => e.id))
  assert.equal(lines.length, events.length + 1)
  const metrics = await broker.metrics.metrics()
  assert.equal(sample(metrics, 'ce_broker_audit_records_total', { sink: 'file', result: 'written' }), events.length + 1)
})

test('redaction paths reach into arrays and objects with *', () => {
  const redact = compileRedactor(['data.guests.*.email', 'data.missing.deeper', 'id'])
  assert.ok(redact !== undefined)
  const value = { id: 'e-1', data: { guests: [{ email: 'a@x.es', name: 'Ana' }, { name: 'Luis' }], notes: 'kept' } }
  redact(value)
  assert.deepEqual(value, { id: '[redacted]', data: { guests: [{ email: '[redacted]', name: 'Ana' }, { name: 'Luis' }], notes: 'kept' } })
  assert.equal(compileRedactor([]), undefined)
})

test('a payload refused for its size is audited without payload; a payload that is not JSON is kept as base64', async (t) => {
  const broker = await startBroker(t, { limits: { maxPayloadBytes: 2000 } })
  const auditor = await connect(t, mqttUrl(broker))
  await auditor.subscribeAsync('$audit/#', { qos: 1 })
  const arrived = collectMessages(auditor, 2)
  const big = await fetch(httpUrl(broker, '/api/mqtt/publish'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ topic: BOOKING_RESERVED_TOPIC, payload: 'x'.repeat(3000) }) })
  assert.equal(big.status, 413)
  const publisher = await connect(t, mqttUrl(broker))
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, 'not json', { qos: 1 })
  const [tooLarge, notJson] = (await arrived).map((m) => parse(m.payload))
  assert.deepEqual([tooLarge?.outcome, tooLarge?.reason, tooLarge?.payload, tooLarge?.clientId], ['rejected', 'payload_too_large', undefined, null])
  assert.deepEqual([notJson?.reason, notJson?.payloadBase64, notJson?.event], ['invalid_json', Buffer.from('not json').toString('base64'), {}])
})

const skip = redisUnavailable() ?? false

test('with Redis, records are added to the audit stream', { skip }, async (t) => {
  const server = await startRedis(t)
  const key = `test:audit:${Math.random().toString(36).slice(2)}`
  const broker = await startBroker(t, { redis: { url: server.url }, audit: { stream: { key, maxLen: 1000 } } })
  const auditor = await connect(t, mqttUrl(broker))
  await auditor.subscribeAsync('$audit/#', { qos: 1 })
  const publisher = await connect(t, mqttUrl(broker))
  // a line break and characters beyond ASCII in an attribute: Redis splits the batch's lines, and must not split there
  const events = [bookingReserved({}, { note: 'Zoë\nO’Brien, 巡礼者' }), bookingReserved({ nights: 0 })]
  // and enough records at once that a batch goes to Redis in several pieces
  const more = Array.from({ length: 200 }, () => bookingReserved())
  const arrived = collectMessages(auditor, 2 + more.length, 20_000)
  for (const event of events) await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })
  await Promise.all(more.map(async (event) => await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })))
  const published = (await arrived).map((m) => parse(m.payload))
  await broker.close()

  const redis = new Redis(server.url)
  defer(t, () => { redis.disconnect() })
  const entries = await redis.xrange(key, '-', '+')
  const inStream = entries.map(([, fields]) => {
    assert.equal(fields[0], 'record')
    return parse(fields[1] ?? '{}')
  })
  assert.deepEqual(inStream, published)
  assert.deepEqual(inStream.slice(0, 2).map((r) => r.outcome), ['accepted', 'rejected'])
  assert.equal(inStream.length, 2 + more.length)
  assert.deepEqual((inStream[0]?.payload as { note?: string } | undefined)?.note, 'Zoë\nO’Brien, 巡礼者')
})

test('an audit file that cannot be opened stops start-up, naming audit.file', async (t) => {
  const dir = await tempFile(t, 'missing-folder')
  await assert.rejects(startBroker(t, { audit: { file: join(dir, 'audit.jsonl') } }), /audit\.file cannot be opened for appending/)
})
