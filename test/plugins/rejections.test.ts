import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import { test } from 'node:test'
import { pino } from 'pino'
import { collectMessages, connect, httpUrl, mqttUrl, sample, startBroker } from '../helpers/broker.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved, parseRecord } from '../helpers/events.js'

test('a duplicate is told on $rejections/<clientId> with reason duplicate, logged at info once per interval, and not dead-lettered', async (t) => {
  const lines: Array<Record<string, unknown>> = []
  const sink = new Writable({ write (chunk: Buffer, _enc, done) { lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>); done() } })
  const broker = await startBroker(t, { logger: pino({ level: 'info' }, sink), limits: { clientLogIntervalMs: 600_000 } })
  const publisher = await connect(t, mqttUrl(broker), { clientId: 'booking-service' })
  await publisher.subscribeAsync('$rejections/booking-service', { qos: 1 })
  const event = bookingReserved()
  const told = collectMessages(publisher, 3)
  // the Quick start run four times: the first is accepted, the other three are duplicates
  for (let run = 0; run < 4; run++) await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })
  const records = (await told).map((m) => ({ topic: m.topic, record: parseRecord(m.payload) }))
  for (const { topic, record } of records) {
    assert.equal(topic, '$rejections/booking-service')
    assert.equal(record.type, 'ce-broker.deadletter')
    assert.equal(record.data.reason, 'duplicate')
    assert.equal(record.data.topic, BOOKING_RESERVED_TOPIC)
    assert.equal(record.data.clientId, 'booking-service')
    assert.deepEqual(record.data.payload, event)
    assert.match(record.data.errors[0]?.message ?? '', /is a duplicate/)
  }
  assert.equal(publisher.connected, true)

  const dlq = await (await fetch(httpUrl(broker, '/api/dlq'))).json() as { items: unknown[] }
  assert.deepEqual(dlq.items, [], 'a duplicate is not kept as a dead letter')
  const metrics = await broker.metrics.metrics()
  assert.equal(sample(metrics, 'ce_broker_dead_letters_total', { reason: 'duplicate' }), undefined, 'nor counted as one')
  assert.equal(sample(metrics, 'ce_broker_events_total', { outcome: 'duplicate' }), 3)

  const logged = lines.filter((line) => line.msg === 'duplicate event dropped')
  assert.equal(logged.length, 1, 'one line per client per interval')
  assert.equal(logged[0]?.level, 30, 'at info')
  assert.equal(logged[0]?.clientId, 'booking-service')
  assert.equal(logged[0]?.eventId, event.id)
  assert.equal(logged[0]?.reason, 'duplicate')
})

for (const packets of ['one SUBSCRIBE', 'two SUBSCRIBEs'] as const) {
  test(`a client subscribed to $rejections/<its id> and $audit/# gets both records (${packets})`, async (t) => {
    const broker = await startBroker(t)
    const client = await connect(t, mqttUrl(broker), { clientId: 'booking-service' })
    if (packets === 'one SUBSCRIBE') {
      await client.subscribeAsync(['$rejections/booking-service', '$audit/#'], { qos: 1 })
    } else {
      await client.subscribeAsync('$rejections/booking-service', { qos: 1 })
      await client.subscribeAsync('$audit/#', { qos: 1 })
    }
    const arrived = collectMessages(client, 2)
    await client.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved({ nights: 0 })), { qos: 1 })
    const messages = await arrived
    assert.deepEqual(messages.map((m) => m.topic).sort(), [`$audit/${BOOKING_RESERVED_TOPIC}`, '$rejections/booking-service'])
    const rejection = messages.find((m) => m.topic === '$rejections/booking-service')
    assert.equal(rejection === undefined ? undefined : parseRecord(rejection.payload).data.reason, 'schema_validation_failed')
  })
}

test('a QoS 1 message and a QoS 0 one published right after it both reach a client subscribed to both', async (t) => {
  // aedes numbers packets as publish() starts and each client drops one numbered below
  // the last it got; the QoS 1 one passes through persistence first, the QoS 0 one does not
  const broker = await startBroker(t)
  const client = await connect(t, mqttUrl(broker))
  await client.subscribeAsync(['plain/first', 'plain/second'], { qos: 1 })
  const arrived = collectMessages(client, 2)
  broker.aedes.publish({ cmd: 'publish', topic: 'plain/first', payload: Buffer.from('1'), qos: 1, retain: false, dup: false }, () => {})
  broker.aedes.publish({ cmd: 'publish', topic: 'plain/second', payload: Buffer.from('2'), qos: 0, retain: false, dup: false }, () => {})
  assert.deepEqual((await arrived).map((m) => m.topic), ['plain/first', 'plain/second'])
})
