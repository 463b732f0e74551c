/**
 * The client library's publisher against a real broker: `publish` resolves once the
 * broker accepted the event and rejects with the broker's reason and field errors, over
 * MQTT 3.1.1 on TCP, TLS and WebSocket.
 */
import assert from 'node:assert/strict'
import { createServer, type Socket } from 'node:net'
import { test, type TestContext } from 'node:test'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { context, trace, TraceFlags } from '@opentelemetry/api'
import mqttPacket, { type Packet } from 'mqtt-packet'
import { hashPassword } from '../../plugins/auth/index.js'
import { createPublisher, EventRejectedError, PublishUnansweredError, type Publisher, type PublisherOptions } from '../../client/index.js'
import { collectMessages, connect, mqttUrl, startBroker } from '../helpers/broker.js'
import { makeCert } from '../helpers/certs.js'
import { defer } from '../helpers/cleanup.js'
import { bookingReserved, BOOKING_RESERVED_TOPIC } from '../helpers/events.js'
import { silentMqttServer } from '../helpers/silent-mqtt.js'

const BOOKING = 'albergue.v1.booking.reserved'
const DATA = bookingReserved().data as Record<string, unknown>

async function publisherFor (t: TestContext, url: string, options: Partial<PublisherOptions> = {}): Promise<Publisher> {
  const publisher = await createPublisher({ url, clientId: 'booking-service', source: '/albergue/booking-service', ...options })
  defer(t, () => publisher.close())
  return publisher
}

test('an accepted event resolves with its id; subscribers get the CloudEvent the publisher built', async (t) => {
  const broker = await startBroker(t)
  const subscriber = await connect(t, mqttUrl(broker))
  await subscriber.subscribeAsync(BOOKING_RESERVED_TOPIC, { qos: 1 })
  const arriving = collectMessages(subscriber, 1)
  const dataschema = 'https://albergue.example/schemas/v1/albergue.v1.booking.reserved.json'
  const publisher = await publisherFor(t, mqttUrl(broker), { dataschemas: { [BOOKING]: dataschema } })

  const published = await publisher.publish(BOOKING, DATA, { subject: 'b-1001', extensions: { partitionkey: 'b-1001' } })
  assert.deepEqual(Object.keys(published).sort(), ['duplicate', 'id'])
  assert.equal(published.duplicate, false)
  assert.match(published.id, /^[0-9a-f-]{36}$/)

  const [message] = await arriving
  const event = JSON.parse(String(message?.payload)) as Record<string, unknown>
  assert.equal(event.id, published.id)
  assert.deepEqual({ ...event, id: undefined, time: undefined }, {
    specversion: '1.0', id: undefined, source: '/albergue/booking-service', type: BOOKING, time: undefined,
    datacontenttype: 'application/json', dataschema, subject: 'b-1001', partitionkey: 'b-1001', data: DATA
  })
  assert.ok(!Number.isNaN(Date.parse(String(event.time))))
})

test('a refused event rejects with the broker\'s reason and field errors; the same id again is a duplicate', async (t) => {
  const broker = await startBroker(t)
  const publisher = await publisherFor(t, mqttUrl(broker))
  await assert.rejects(publisher.publish(BOOKING, { ...DATA, nights: 0 }), (err: unknown) => {
    assert.ok(err instanceof EventRejectedError)
    assert.equal(err.reason, 'schema_validation_failed')
    assert.equal(err.code, 'schema_validation_failed')
    assert.deepEqual(err.errors, [{ path: '/data/nights', message: 'must be >= 1' }])
    assert.match(err.message, /rejected: schema_validation_failed \(\/data\/nights: must be >= 1\)/)
    return true
  })
  const first = await publisher.publish(BOOKING, DATA, { id: 'booking-b-1001' })
  const again = await publisher.publish(BOOKING, DATA, { id: 'booking-b-1001' })
  assert.deepEqual([first, again], [{ id: 'booking-b-1001', duplicate: false }, { id: 'booking-b-1001', duplicate: true }])
})

test('many publishes at once each get their own outcome', async (t) => {
  const broker = await startBroker(t)
  const publisher = await publisherFor(t, mqttUrl(broker))
  const outcomes = await Promise.allSettled(Array.from({ length: 60 }, async (_, i) => await publisher.publish(BOOKING, i % 3 === 0 ? { ...DATA, nights: 0 } : DATA, { id: `e-${i % 40}` })))
  const seen = outcomes.map((o, i) => o.status === 'fulfilled' ? (o.value.duplicate ? 'duplicate' : 'accepted') : o.reason instanceof EventRejectedError ? o.reason.reason : `unexpected ${i}`)
  // ids 0..39 first, then 40..59 reuse ids 0..19: a repeat of an accepted id is a duplicate, of a rejected one rejected again
  const expected = Array.from({ length: 60 }, (_, i) => i % 3 === 0 ? 'schema_validation_failed' : i >= 40 && (i - 40) % 3 !== 0 ? 'duplicate' : 'accepted')
  assert.deepEqual(seen, expected)
})

test('an event the ACL does not grant rejects as not_authorized', async (t) => {
  const broker = await startBroker(t, {
    auth: {
      users: [{ username: 'booking-service', password: await hashPassword('booking-secret-1', 10), roles: ['publisher'] }],
      acl: [{ role: 'publisher', publish: ['albergue/v1/booking/#'], subscribe: [] }]
    }
  })
  const publisher = await publisherFor(t, mqttUrl(broker), { username: 'booking-service', password: 'booking-secret-1' })
  assert.equal((await publisher.publish(BOOKING, DATA)).duplicate, false)
  await assert.rejects(publisher.publish('albergue.v1.payment.completed', {}), (err: unknown) => err instanceof EventRejectedError && err.reason === 'not_authorized')
})

test('over TLS and over WebSocket', async (t) => {
  const cert = await makeCert(t)
  const broker = await startBroker(t, { mqtt: { tls: { port: 0, key: cert.keyFile, cert: cert.certFile } } })
  const overTls = await publisherFor(t, `mqtts://127.0.0.1:${broker.ports.mqttTls ?? 0}`, { clientId: 'over-tls', mqtt: { ca: cert.cert, servername: 'localhost' } })
  const overWs = await publisherFor(t, `ws://127.0.0.1:${broker.ports.http}/mqtt`, { clientId: 'over-ws' })
  for (const publisher of [overTls, overWs]) {
    assert.equal((await publisher.publish(BOOKING, DATA)).duplicate, false)
    await assert.rejects(publisher.publish(BOOKING, { ...DATA, nights: 0 }), EventRejectedError)
  }
})

test('the active OpenTelemetry span travels as the traceparent and tracestate extensions', async (t) => {
  const manager = new AsyncLocalStorageContextManager().enable()
  context.setGlobalContextManager(manager)
  t.after(() => { context.disable() })
  const broker = await startBroker(t)
  const subscriber = await connect(t, mqttUrl(broker))
  await subscriber.subscribeAsync(BOOKING_RESERVED_TOPIC, { qos: 1 })
  const arriving = collectMessages(subscriber, 2)
  const publisher = await publisherFor(t, mqttUrl(broker))
  const span = trace.wrapSpanContext({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: TraceFlags.SAMPLED })
  await context.with(trace.setSpan(context.active(), span), async () => { await publisher.publish(BOOKING, DATA) })
  await publisher.publish(BOOKING, DATA)
  const [traced, plain] = (await arriving).map((m) => JSON.parse(String(m.payload)) as Record<string, unknown>)
  assert.equal(traced?.traceparent, '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01')
  assert.equal(plain?.traceparent, undefined, 'no active span, no traceparent')
})

test('no answer in time rejects with PublishUnansweredError; a client id that would widen $rejections is refused', async (t) => {
  const { port, dropAll } = await silentMqttServer(t)
  const publisher = await publisherFor(t, `mqtt://127.0.0.1:${port}`, { timeoutMs: 300 })
  await assert.rejects(publisher.publish(BOOKING, DATA, { id: 'lost-1' }), (err: unknown) => err instanceof PublishUnansweredError && err.eventId === 'lost-1')
  // sent, then the connection drops: the client would send it again before subscribing again, so its answer could not
  // tell a refusal; it is given up at once, for the caller to publish again with the same id
  const slow = await publisherFor(t, `mqtt://127.0.0.1:${port}`, { clientId: 'dropped', timeoutMs: 60_000, mqtt: { reconnectPeriod: 0 } })
  const inFlight = slow.publish(BOOKING, DATA, { id: 'in-flight-1' })
  await new Promise((resolve) => setImmediate(resolve))
  dropAll()
  await assert.rejects(inFlight, (err: unknown) => err instanceof PublishUnansweredError && /connection closed before the broker answered/.test(err.message))
  await assert.rejects(createPublisher({ url: `mqtt://127.0.0.1:${port}`, clientId: 'a/#', source: '/x' }), /may not be empty nor hold/)
})

test('across a broker restart: publishes made while it is away are answered once it is back, rejections included', async (t) => {
  const first = await startBroker(t)
  const port = first.ports.mqtt
  const publisher = await publisherFor(t, mqttUrl(first), { mqtt: { reconnectPeriod: 100 } })
  assert.equal((await publisher.publish(BOOKING, DATA)).duplicate, false)
  await first.close()
  // sent while the broker is away: the client keeps them and sends them after it subscribed again
  const accepted = publisher.publish(BOOKING, DATA)
  const refused = publisher.publish(BOOKING, { ...DATA, nights: 0 })
  const second = await startBroker(t, { mqtt: { port } })
  assert.equal(second.ports.mqtt, port)
  assert.equal((await accepted).duplicate, false)
  await assert.rejects(refused, (err: unknown) => err instanceof EventRejectedError && err.reason === 'schema_validation_failed')
})

test('a refusal that disconnects (onInvalid "disconnect") rejects with its reason, and the publisher goes on publishing', async (t) => {
  const broker = await startBroker(t, { validation: { rules: [{ match: 'albergue/#', onInvalid: 'disconnect' }] } })
  const publisher = await publisherFor(t, mqttUrl(broker), { timeoutMs: 10_000, mqtt: { reconnectPeriod: 50 } })
  // the record comes before the disconnect: it is the answer, not "unanswered"
  await assert.rejects(publisher.publish(BOOKING, { ...DATA, nights: 0 }), (err: unknown) => err instanceof EventRejectedError && err.reason === 'schema_validation_failed')
  // the refused event is not sent again on the next connection (it would be refused and disconnect again, forever)
  assert.equal((await publisher.publish(BOOKING, DATA)).duplicate, false)
})

test('an event over limits.maxPayloadBytes is unanswered (the broker disconnects), and the publisher goes on publishing', async (t) => {
  const broker = await startBroker(t, { limits: { maxPayloadBytes: 4096 } })
  const publisher = await publisherFor(t, mqttUrl(broker), { timeoutMs: 10_000, mqtt: { reconnectPeriod: 50 } })
  await assert.rejects(publisher.publish(BOOKING, DATA, { extensions: { note: 'x'.repeat(8192) } }), (err: unknown) => err instanceof PublishUnansweredError && /connection closed/.test(err.message))
  assert.equal((await publisher.publish(BOOKING, DATA)).duplicate, false)
})

test('a type that makes no topic (a wildcard, empty) is refused with a TypeError naming it; the publishes under way are not hurt', async (t) => {
  const broker = await startBroker(t)
  const publisher = await publisherFor(t, mqttUrl(broker), { timeoutMs: 10_000 })
  for (const type of ['albergue.v1.booking.+', 'albergue.#', '']) {
    const alongside = publisher.publish(BOOKING, DATA)
    await assert.rejects(publisher.publish(type, DATA), (err: unknown) => err instanceof TypeError && err.message.includes(`type ${JSON.stringify(type)}`))
    assert.equal((await alongside).duplicate, false, `a publish beside ${JSON.stringify(type)}`)
  }
})
