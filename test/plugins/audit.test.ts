import assert from 'node:assert/strict'
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
    event: { id: accepted.id, type: accepted.type, source: accepted.source, time: accepted.time },
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
  assert.deepEqual(record?.event, { id: event.id, type: event.type, source: '[redacted]', time: event.time })
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
  const events = [bookingReserved(), bookingReserved({ nights: 0 })]
  const arrived = collectMessages(auditor, 2)
  for (const event of events) await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })
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
  assert.deepEqual(inStream.map((r) => r.outcome), ['accepted', 'rejected'])
})

test('an audit file that cannot be opened stops start-up, naming audit.file', async (t) => {
  const dir = await tempFile(t, 'missing-folder')
  await assert.rejects(startBroker(t, { audit: { file: join(dir, 'audit.jsonl') } }), /audit\.file cannot be opened for appending/)
})
