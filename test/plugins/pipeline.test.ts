import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { EventRejectedError, definePlugin } from '../../src/index.js'
import { closed, connect, dataDirFor, httpUrl, mqttUrl, nextMessage, sample, startBroker, subscribeGranted } from '../helpers/broker.js'
import { defer } from '../helpers/cleanup.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved, parseRecord } from '../helpers/events.js'

async function listDlq (url: string): Promise<{ items: Array<{ id: string, record: ReturnType<typeof parseRecord> }>, next?: string }> {
  const res = await fetch(url)
  assert.equal(res.status, 200)
  return await res.json() as { items: Array<{ id: string, record: ReturnType<typeof parseRecord> }>, next?: string }
}

test('a valid event is accepted and delivered; an invalid one is acked, dead-lettered and reaches no subscriber', async (t) => {
  const broker = await startBroker(t, { nodeId: 'node-1' })
  const watcher = await connect(t, mqttUrl(broker))
  await watcher.subscribeAsync('albergue/#', { qos: 1 })
  await watcher.subscribeAsync('$DLQ/#', { qos: 1 })
  const publisher = await connect(t, mqttUrl(broker), { clientId: 'booking-service' })

  const good = bookingReserved()
  const delivered = nextMessage(watcher)
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(good), { qos: 1 })
  const first = await delivered
  assert.equal(first.topic, BOOKING_RESERVED_TOPIC)
  assert.deepEqual(JSON.parse(first.payload.toString()), good)

  const bad = bookingReserved({ nights: 0 })
  const diverted = nextMessage(watcher)
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(bad), { qos: 1, retain: true })
  const message = await diverted
  assert.equal(message.topic, `$DLQ/${BOOKING_RESERVED_TOPIC}`, 'the only message after the valid one is the dead letter')
  assert.equal(message.retain, false)
  const record = parseRecord(message.payload)
  assert.equal(record.specversion, '1.0')
  assert.equal(record.type, 'ce-broker.deadletter')
  assert.equal(record.source, 'ce-broker://node-1')
  assert.equal(record.datacontenttype, 'application/json')
  assert.match(record.id, /^[0-9a-f-]{36}$/)
  assert.ok(!Number.isNaN(Date.parse(record.time)))
  assert.deepEqual(record.data, {
    reason: 'schema_validation_failed',
    errors: [{ path: '/data/nights', message: 'must be >= 1' }],
    topic: BOOKING_RESERVED_TOPIC,
    clientId: 'booking-service',
    payload: bad
  })
  assert.equal(publisher.connected, true)

  const retained = await (await fetch(httpUrl(broker, `/api/mqtt/retained/${encodeURIComponent(BOOKING_RESERVED_TOPIC)}`))).json() as { messages: unknown[] }
  assert.deepEqual(retained.messages, [], 'a rejected retained event is not retained')

  const stored = await listDlq(httpUrl(broker, '/api/dlq'))
  assert.equal(stored.items.length, 1)
  assert.deepEqual(stored.items[0]?.record, record)

  const metrics = await broker.metrics.metrics()
  assert.equal(sample(metrics, 'ce_broker_events_total', { outcome: 'accepted' }), 1)
  assert.equal(sample(metrics, 'ce_broker_events_total', { outcome: 'rejected', reason: 'schema_validation_failed' }), 1)
  assert.equal(sample(metrics, 'ce_broker_dead_letters_total', { reason: 'schema_validation_failed' }), 1)
})

test('every reason code over MQTT, at QoS 1 and 2, with the publisher acked and still connected', async (t) => {
  const broker = await startBroker(t, {
    validation: {
      default: 'reject',
      rules: [{ match: 'albergue/#' }, { match: 'open/#', schema: 'optional' }, { match: 'raw/#', cloudevents: false, schema: 'none' }]
    }
  })
  const watcher = await connect(t, mqttUrl(broker))
  await watcher.subscribeAsync('$DLQ/#', { qos: 1 })
  const publisher = await connect(t, mqttUrl(broker), { clientId: 'payment-service' })

  const cases: Array<[string, string | Buffer, string, string]> = [
    [BOOKING_RESERVED_TOPIC, '{"specversion":"1.0",', 'invalid_json', ''],
    [BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved({}, { time: 'yesterday' })), 'invalid_cloudevent', '/time'],
    [BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved({}, { specversion: undefined })), 'invalid_cloudevent', '/specversion'],
    ['albergue/v1/booking/confirmed', JSON.stringify(bookingReserved()), 'type_topic_mismatch', '/type'],
    ['albergue/v9/unknown/thing', JSON.stringify(bookingReserved({}, { type: 'albergue.v9.unknown.thing' })), 'unknown_type', '/type'],
    [BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved({ check_in_date: 'soon' })), 'schema_validation_failed', '/data/check_in_date'],
    ['elsewhere/x', 'plain', 'no_matching_rule', '']
  ]
  for (const qos of [1, 2] as const) {
    for (const [topic, payload, reason, path] of cases) {
      const diverted = nextMessage(watcher)
      await publisher.publishAsync(topic, payload, { qos })
      const record = parseRecord((await diverted).payload)
      assert.equal(record.data.reason, reason, `${topic} ${String(payload)}`)
      assert.ok(record.data.errors.some((e) => e.path === path), `${reason}: ${JSON.stringify(record.data.errors)}`)
      assert.equal(publisher.connected, true)
    }
  }
  const invalidJson = (await listDlq(httpUrl(broker, '/api/dlq?reason=invalid_json'))).items[0]?.record.data
  assert.equal(invalidJson?.payloadBase64, Buffer.from('{"specversion":"1.0",').toString('base64'), 'a payload that is not JSON is kept byte for byte')

  // schema "optional" with no schema registered, and cloudevents: false, both pass
  const plain = await connect(t, mqttUrl(broker))
  await plain.subscribeAsync(['open/#', 'raw/#'], { qos: 1 })
  const first = nextMessage(plain)
  await publisher.publishAsync('open/v1/thing', JSON.stringify(bookingReserved({}, { type: 'open.v1.thing' })), { qos: 1 })
  assert.equal((await first).topic, 'open/v1/thing')
  const second = nextMessage(plain)
  await publisher.publishAsync('raw/bytes', Buffer.from([0, 1, 2]), { qos: 1 })
  assert.equal((await second).topic, 'raw/bytes')
})

test('onInvalid "disconnect" drops the publisher, and still keeps the dead letter', async (t) => {
  const broker = await startBroker(t, { validation: { rules: [{ match: 'albergue/#', onInvalid: 'disconnect' }] } })
  const watcher = await connect(t, mqttUrl(broker))
  await watcher.subscribeAsync(['$DLQ/#', 'albergue/#'], { qos: 1 })
  const publisher = await connect(t, mqttUrl(broker), { clientId: 'gov-submitter' })
  const record = nextMessage(watcher)
  const gone = closed(publisher)
  publisher.publish(BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved({ nights: 'two' })), { qos: 1 })
  await gone
  const message = await record
  assert.equal(message.topic, `$DLQ/${BOOKING_RESERVED_TOPIC}`)
  assert.equal(parseRecord(message.payload).data.clientId, 'gov-submitter')
  assert.equal((await listDlq(httpUrl(broker, '/api/dlq'))).items.length, 1)
})

test('$rejections/<clientId> tells a publisher about its own rejections only', async (t) => {
  const broker = await startBroker(t)
  const booking = await connect(t, mqttUrl(broker), { clientId: 'booking-service' })
  const payment = await connect(t, mqttUrl(broker), { clientId: 'payment-service' })
  assert.deepEqual(await subscribeGranted(booking, ['$rejections/booking-service']), [1])
  assert.deepEqual(await subscribeGranted(payment, ['$rejections/booking-service', '$rejections/+', '$rejections/#', '$rejections/payment-service']), [128, 128, 128, 1])

  const toBooking = nextMessage(booking, '$rejections/booking-service')
  const toPayment = nextMessage(payment)
  await booking.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved({ nights: 0 })), { qos: 1 })
  const own = parseRecord((await toBooking).payload)
  assert.equal(own.data.reason, 'schema_validation_failed')
  assert.equal(own.data.clientId, 'booking-service')

  await payment.publishAsync(BOOKING_RESERVED_TOPIC, '{', { qos: 1 })
  const theirs = await toPayment
  assert.equal(theirs.topic, '$rejections/payment-service', 'the payment service saw nothing of the booking service\'s rejection')
  assert.equal(parseRecord(theirs.payload).data.reason, 'invalid_json')
})

test('GET /api/dlq filters by topic and reason and pages newest first; DELETE removes', async (t) => {
  const broker = await startBroker(t)
  const publisher = await connect(t, mqttUrl(broker))
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, '{', { qos: 1 })
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved({ nights: 0 })), { qos: 1 })
  await publisher.publishAsync('albergue/v1/booking/confirmed', '{', { qos: 1 })

  const all = await listDlq(httpUrl(broker, '/api/dlq'))
  assert.deepEqual(all.items.map((i) => [i.record.data.topic, i.record.data.reason]), [
    ['albergue/v1/booking/confirmed', 'invalid_json'],
    [BOOKING_RESERVED_TOPIC, 'schema_validation_failed'],
    [BOOKING_RESERVED_TOPIC, 'invalid_json']
  ])
  assert.equal(all.next, undefined)
  assert.deepEqual((await listDlq(httpUrl(broker, '/api/dlq?reason=invalid_json'))).items.length, 2)
  assert.deepEqual((await listDlq(httpUrl(broker, `/api/dlq?topic=${encodeURIComponent(BOOKING_RESERVED_TOPIC)}`))).items.length, 2)
  assert.deepEqual((await listDlq(httpUrl(broker, `/api/dlq?topic=${encodeURIComponent('albergue/+/booking/confirmed')}`))).items.length, 1)

  const page1 = await listDlq(httpUrl(broker, '/api/dlq?limit=2'))
  assert.equal(page1.items.length, 2)
  assert.ok(page1.next !== undefined)
  const page2 = await listDlq(httpUrl(broker, `/api/dlq?limit=2&cursor=${page1.next}`))
  assert.deepEqual(page2.items.map((i) => i.id), [all.items[2]?.id])
  assert.equal(page2.next, undefined)

  const id = all.items[0]?.id ?? ''
  assert.equal((await fetch(httpUrl(broker, `/api/dlq/${id}`), { method: 'DELETE' })).status, 204)
  const again = await fetch(httpUrl(broker, `/api/dlq/${id}`), { method: 'DELETE' })
  assert.equal(again.status, 404)
  assert.equal((await again.json() as { error: { code: string } }).error.code, 'not_found')
  assert.equal((await listDlq(httpUrl(broker, '/api/dlq'))).items.length, 2)
})

test('replay runs the pipeline again: accepted → delivered and removed; rejected again → kept with the new reason', async (t) => {
  let refuseOnce = true
  const flaky = definePlugin('flaky', async (ctx) => {
    ctx.hooks.authorizePublish((attempt) => {
      if (attempt.topic === 'albergue/v1/booking/confirmed' && refuseOnce) {
        refuseOnce = false
        throw new EventRejectedError('unknown_type', attempt.topic, [{ path: '/type', message: 'registry not loaded yet' }], 'dlq')
      }
    })
  })
  const broker = await startBroker(t, { plugins: [flaky()] })
  const subscriber = await connect(t, mqttUrl(broker))
  await subscriber.subscribeAsync('albergue/#', { qos: 1 })
  const publisher = await connect(t, mqttUrl(broker), { clientId: 'booking-service' })
  const confirmed = { specversion: '1.0', id: 'c-1', source: '/albergue/booking-service', type: 'albergue.v1.booking.confirmed', data: { booking_id: 'b-1', pilgrim_id: 'p-1', confirmed_at: '2026-05-01T10:00:00Z' } }
  await publisher.publishAsync('albergue/v1/booking/confirmed', JSON.stringify(confirmed), { qos: 1 })
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved({ nights: 0 })), { qos: 1 })
  const [invalid, fixable] = (await listDlq(httpUrl(broker, '/api/dlq'))).items
  assert.equal(fixable?.record.data.reason, 'unknown_type')

  const delivered = nextMessage(subscriber, 'albergue/v1/booking/confirmed')
  const replayed = await fetch(httpUrl(broker, `/api/dlq/${fixable?.id ?? ''}/replay`), { method: 'POST' })
  assert.equal(replayed.status, 200)
  assert.deepEqual(await replayed.json(), { replayed: true, id: fixable?.id, topic: 'albergue/v1/booking/confirmed' })
  assert.deepEqual(JSON.parse((await delivered).payload.toString()), confirmed)

  const failed = await fetch(httpUrl(broker, `/api/dlq/${invalid?.id ?? ''}/replay`), { method: 'POST' })
  assert.equal(failed.status, 422)
  const body = await failed.json() as { error: { code: string, details: unknown } }
  assert.equal(body.error.code, 'schema_validation_failed')
  assert.deepEqual(body.error.details, [{ path: '/data/nights', message: 'must be >= 1' }])
  const left = await listDlq(httpUrl(broker, '/api/dlq'))
  assert.deepEqual(left.items.map((i) => i.id), [invalid?.id], 'the replayed one is gone, the failed one kept under its id')
  assert.ok((left.items[0]?.record.time ?? '') >= (invalid?.record.time ?? ''))
  assert.equal((await fetch(httpUrl(broker, '/api/dlq/no-such-id/replay'), { method: 'POST' })).status, 404)
})

test('the store keeps at most deadLetters.maxEntries, evicting the oldest and counting it', async (t) => {
  const broker = await startBroker(t, { deadLetters: { maxEntries: 2 } })
  const publisher = await connect(t, mqttUrl(broker))
  for (const n of [1, 2, 3]) await publisher.publishAsync(BOOKING_RESERVED_TOPIC, `not json ${n}`, { qos: 1 })
  const items = (await listDlq(httpUrl(broker, '/api/dlq'))).items
  assert.deepEqual(items.map((i) => Buffer.from(i.record.data.payloadBase64 ?? '', 'base64').toString()), ['not json 3', 'not json 2'])
  assert.equal(sample(await broker.metrics.metrics(), 'ce_broker_dead_letters_evicted_total'), 1)
})

async function schemaFolder (t: TestContext, files: Record<string, unknown>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ce-broker-pipeline-'))
  defer(t, () => rm(dir, { recursive: true, force: true }))
  for (const [name, schema] of Object.entries(files)) await writeFile(join(dir, name), JSON.stringify(schema))
  return dir
}

test('a dataschema naming a registered $id selects that schema', async (t) => {
  const dir = await schemaFolder(t, {
    'acme.v1.temp.json': { $schema: 'http://json-schema.org/draft-07/schema#', type: 'object', properties: { celsius: { type: 'number' } }, required: ['celsius'] },
    'acme.v1.temp.indoor.json': { $id: 'https://acme.example/indoor.json', type: 'object', properties: { celsius: { type: 'number', maximum: 40 } }, required: ['celsius'] }
  })
  const broker = await startBroker(t, { schemas: { dir }, validation: { rules: [{ match: 'acme/#' }] } })
  const watcher = await connect(t, mqttUrl(broker))
  await watcher.subscribeAsync(['acme/#', '$DLQ/#'], { qos: 1 })
  const event = (celsius: number, dataschema?: string): string => JSON.stringify({
    specversion: '1.0', id: `t-${celsius}-${dataschema ?? ''}`, source: '/sensors/1', type: 'acme.v1.temp', data: { celsius }, ...(dataschema === undefined ? {} : { dataschema })
  })
  const publisher = await connect(t, mqttUrl(broker))
  const accepted = nextMessage(watcher)
  await publisher.publishAsync('acme/v1/temp', event(60), { qos: 1 })
  assert.equal((await accepted).topic, 'acme/v1/temp', 'the type\'s own (draft-07) schema allows 60')
  const refused = nextMessage(watcher)
  await publisher.publishAsync('acme/v1/temp', event(60, 'https://acme.example/indoor.json'), { qos: 1 })
  const record = parseRecord((await refused).payload)
  assert.equal(record.data.reason, 'schema_validation_failed')
  assert.deepEqual(record.data.errors, [{ path: '/data/celsius', message: 'must be <= 40' }])

  const listed = await (await fetch(httpUrl(broker, '/api/schemas'))).json() as { schemas: Array<{ type: string, file: string, id?: string, draft: string }> }
  assert.deepEqual(listed.schemas.map((s) => [s.type, s.file, s.id, s.draft]), [
    ['acme.v1.temp', 'acme.v1.temp.json', undefined, 'draft-07'],
    ['acme.v1.temp.indoor', 'acme.v1.temp.indoor.json', 'https://acme.example/indoor.json', '2020-12']
  ])
})

test('a broken schema file stops start-up naming the file', async (t) => {
  const dir = await schemaFolder(t, { 'acme.v1.bad.json': { type: 'object', properties: { n: { type: 'integr' } } } })
  const { createBroker } = await import('../../src/index.js')
  await assert.rejects(createBroker({ mqtt: { port: 0 }, http: { port: 0 }, logLevel: 'silent', schemas: { dir, dataDir: await dataDirFor(t) } }), /^SchemaFileError: schema acme\.v1\.bad\.json /)
})

test('broker.publish(event) runs the pipeline: the event goes to its type\'s topic, a bad one rejects with its reason', async (t) => {
  const broker = await startBroker(t)
  const watcher = await connect(t, mqttUrl(broker))
  await watcher.subscribeAsync('albergue/#', { qos: 1 })
  const good = bookingReserved()
  const delivered = nextMessage(watcher)
  await broker.publish({ ...good, specversion: '1.0', id: String(good.id), source: String(good.source), type: String(good.type) })
  assert.equal((await delivered).topic, BOOKING_RESERVED_TOPIC)
  await assert.rejects(broker.publish({ specversion: '1.0', id: 'x', source: '/s', type: 'albergue.v1.booking.reserved', data: {} }), (err: unknown) => {
    assert.ok(err instanceof EventRejectedError)
    assert.equal(err.reason, 'schema_validation_failed')
    return true
  })
  assert.equal((await listDlq(httpUrl(broker, '/api/dlq'))).items[0]?.record.data.clientId, null)
})

test('payload_too_large: a PUBLISH over limits.maxPayloadBytes disconnects its client from the header on, over TCP and WebSocket; others carry on', async (t) => {
  const broker = await startBroker(t, { limits: { maxPayloadBytes: 1024 } })
  const bystander = await connect(t, mqttUrl(broker))
  await bystander.subscribeAsync(['big/#', '$DLQ/#'], { qos: 1 })
  for (const url of [mqttUrl(broker), `ws://127.0.0.1:${broker.ports.http}/mqtt`]) {
    const publisher = await connect(t, url)
    const fits = nextMessage(bystander)
    await publisher.publishAsync('big/fits', Buffer.alloc(1024, 1), { qos: 1 })
    assert.equal((await fits).payload.length, 1024)
    const gone = closed(publisher)
    publisher.publish('big/too', Buffer.alloc(1025, 1), { qos: 1 })
    await gone
  }
  const after = nextMessage(bystander)
  const other = await connect(t, mqttUrl(broker))
  await other.publishAsync('big/after', 'still here', { qos: 1 })
  assert.equal((await after).topic, 'big/after', 'nothing oversized was delivered or dead-lettered before it')
  assert.equal(sample(await broker.metrics.metrics(), 'ce_broker_events_total', { outcome: 'rejected', reason: 'payload_too_large' }), 2)
  assert.deepEqual((await listDlq(httpUrl(broker, '/api/dlq'))).items, [])
})

test('one warn line per rejection: clientId, topic, event id, reason and the flow\'s extension values, no payload', async (t) => {
  const { pino } = await import('pino')
  const { Writable } = await import('node:stream')
  const lines: Array<Record<string, unknown>> = []
  const sink = new Writable({ write (chunk: Buffer, _enc, done) { lines.push(JSON.parse(chunk.toString())); done() } })
  const broker = await startBroker(t, { logger: pino({ level: 'warn' }, sink) })
  const publisher = await connect(t, mqttUrl(broker), { clientId: 'booking-service' })
  const bad = bookingReserved({ nights: 0 }, { correlationid: 'flow-42', causationid: 'cmd-7', traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' })
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(bad), { qos: 1 })
  const refusals = lines.filter((l) => l.msg === 'publish diverted')
  assert.equal(refusals.length, 1)
  const [line] = refusals
  assert.equal(line?.level, 40)
  assert.equal(line?.clientId, 'booking-service')
  assert.equal(line?.topic, BOOKING_RESERVED_TOPIC)
  assert.equal(line?.eventId, bad.id)
  assert.equal(line?.reason, 'schema_validation_failed')
  assert.equal(line?.correlationid, 'flow-42')
  assert.equal(line?.causationid, 'cmd-7')
  assert.equal(line?.traceparent, bad.traceparent)
  assert.ok(!JSON.stringify(line).includes('b-1001'), 'no payload at warn')
})
