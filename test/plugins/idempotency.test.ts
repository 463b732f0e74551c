import assert from 'node:assert/strict'
import { test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { EventRejectedError, definePlugin } from '../../src/index.js'
import { collectMessages, connect, httpUrl, mqttUrl, sample, startBroker } from '../helpers/broker.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved } from '../helpers/events.js'
import { redisUnavailable, startRedis } from '../helpers/redis.js'

function idOf (payload: Buffer): unknown {
  return (JSON.parse(payload.toString()) as { id?: unknown }).id
}

test('a duplicate (same source + id) is acked at QoS 0, 1 and 2 and reaches no subscriber; the publisher stays connected', async (t) => {
  const broker = await startBroker(t)
  const watcher = await connect(t, mqttUrl(broker))
  await watcher.subscribeAsync(['albergue/#', '$DLQ/#'], { qos: 2 })
  const publisher = await connect(t, mqttUrl(broker), { clientId: 'booking-service' })

  for (const qos of [0, 1, 2] as const) {
    const event = bookingReserved()
    const next = bookingReserved()
    // one publisher's packets are decided in order: once `next` arrives, the copy was dropped
    const arrived = collectMessages(watcher, 2)
    await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos })
    await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos })
    await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(next), { qos })
    const messages = await arrived
    assert.deepEqual(messages.map((m) => [m.topic, idOf(m.payload)]), [[BOOKING_RESERVED_TOPIC, event.id], [BOOKING_RESERVED_TOPIC, next.id]], `QoS ${qos}`)
    assert.equal(publisher.connected, true)
  }
  const metrics = await broker.metrics.metrics()
  assert.equal(sample(metrics, 'ce_broker_events_total', { outcome: 'duplicate' }), 3)
  assert.equal(sample(metrics, 'ce_broker_events_total', { outcome: 'accepted' }), 6)
  const dlq = await (await fetch(httpUrl(broker, '/api/dlq'))).json() as { items: unknown[] }
  assert.deepEqual(dlq.items, [], 'duplicates are not dead-lettered')
})

test('the same id from another source is another event', async (t) => {
  const broker = await startBroker(t)
  const watcher = await connect(t, mqttUrl(broker))
  await watcher.subscribeAsync('albergue/#', { qos: 1 })
  const publisher = await connect(t, mqttUrl(broker))
  const first = bookingReserved()
  const second = { ...first, source: '/albergue/front-desk' }
  const arrived = collectMessages(watcher, 2)
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(first), { qos: 1 })
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(second), { qos: 1 })
  const sources = (await arrived).map((m) => (JSON.parse(m.payload.toString()) as { source: string }).source)
  assert.deepEqual(sources, [first.source, second.source])
})

test('over HTTP a duplicate answers 200 { duplicate: true }, on both ingress routes and in a batch', async (t) => {
  const broker = await startBroker(t)
  const event = bookingReserved()
  const postEvent = async (): Promise<{ status: number, body: unknown }> => {
    const res = await fetch(httpUrl(broker, '/api/events'), { method: 'POST', headers: { 'content-type': 'application/cloudevents+json' }, body: JSON.stringify(event) })
    return { status: res.status, body: await res.json() }
  }
  assert.deepEqual(await postEvent(), { status: 202, body: { accepted: true, topic: BOOKING_RESERVED_TOPIC, id: event.id } })
  assert.deepEqual(await postEvent(), { status: 200, body: { duplicate: true, topic: BOOKING_RESERVED_TOPIC, id: event.id } })

  const seed = bookingReserved()
  const postSeed = async (): Promise<{ status: number, body: unknown }> => {
    const res = await fetch(httpUrl(broker, '/api/mqtt/publish'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ topic: BOOKING_RESERVED_TOPIC, payload: seed }) })
    return { status: res.status, body: await res.json() }
  }
  assert.equal((await postSeed()).status, 202)
  assert.deepEqual(await postSeed(), { status: 200, body: { duplicate: true, topic: BOOKING_RESERVED_TOPIC, id: seed.id } })

  const fresh = bookingReserved()
  const batch = await fetch(httpUrl(broker, '/api/events'), { method: 'POST', headers: { 'content-type': 'application/cloudevents-batch+json' }, body: JSON.stringify([event, fresh]) })
  assert.equal(batch.status, 202)
  assert.deepEqual(await batch.json(), { accepted: 1, events: [{ topic: BOOKING_RESERVED_TOPIC, id: event.id, duplicate: true }, { topic: BOOKING_RESERVED_TOPIC, id: fresh.id }] })
})

test('an event is a duplicate only within the window', async (t) => {
  const broker = await startBroker(t, { idempotency: { windowMs: 100 } })
  const watcher = await connect(t, mqttUrl(broker))
  await watcher.subscribeAsync('albergue/#', { qos: 1 })
  const publisher = await connect(t, mqttUrl(broker))
  const event = bookingReserved()
  const first = collectMessages(watcher, 1)
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })
  await first
  // well past the 100 ms window: this waits for expiry, it does not time anything
  await sleep(400)
  const again = collectMessages(watcher, 1)
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })
  assert.equal(idOf((await again)[0]?.payload ?? Buffer.from('{}')), event.id)
})

test('only accepted events are remembered: one refused by validation or by a later plugin may be fixed and sent again', async (t) => {
  // refuses bookings of 7 nights, after idempotency has claimed them
  const noWeeks = definePlugin('no-weeks', async (ctx) => {
    ctx.hooks.authorizePublish((attempt) => {
      if (attempt.payload.includes('"nights":7')) throw new EventRejectedError('schema_validation_failed', attempt.topic, [{ path: '/data/nights', message: 'no weekly stays' }], 'dlq')
    })
  }, { dependsOn: ['idempotency'] })
  const broker = await startBroker(t, { plugins: [noWeeks()] })
  const watcher = await connect(t, mqttUrl(broker))
  await watcher.subscribeAsync(['albergue/#', '$DLQ/#'], { qos: 1 })
  const publisher = await connect(t, mqttUrl(broker))

  const invalid = bookingReserved({ nights: 0 })
  const refusedLater = bookingReserved({ nights: 7 })
  const arrived = collectMessages(watcher, 4)
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(invalid), { qos: 1 })
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify({ ...invalid, data: { ...(invalid.data as object), nights: 2 } }), { qos: 1 })
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(refusedLater), { qos: 1 })
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify({ ...refusedLater, data: { ...(refusedLater.data as object), nights: 2 } }), { qos: 1 })
  const messages = await arrived
  assert.deepEqual(messages.map((m) => m.topic), [`$DLQ/${BOOKING_RESERVED_TOPIC}`, BOOKING_RESERVED_TOPIC, `$DLQ/${BOOKING_RESERVED_TOPIC}`, BOOKING_RESERVED_TOPIC])
  assert.deepEqual([idOf(messages[1]?.payload ?? Buffer.from('{}')), idOf(messages[3]?.payload ?? Buffer.from('{}'))], [invalid.id, refusedLater.id])
})

const skip = redisUnavailable() ?? false

test('two brokers on one Redis, racing the same event, deliver it once', { skip }, async (t) => {
  const redis = await startRedis(t)
  const a = await startBroker(t, { nodeId: 'node-a', redis: { url: redis.url } })
  const b = await startBroker(t, { nodeId: 'node-b', redis: { url: redis.url } })
  const watcher = await connect(t, mqttUrl(a))
  await watcher.subscribeAsync('albergue/#', { qos: 1 })
  const onA = await connect(t, mqttUrl(a))
  const onB = await connect(t, mqttUrl(b))

  for (let round = 0; round < 5; round++) {
    const event = bookingReserved()
    const [doneA, doneB] = [bookingReserved(), bookingReserved()]
    // each publisher's events are decided in order: once both markers are in, both copies were decided
    const arrived = collectMessages(watcher, 3)
    await Promise.all([
      (async () => {
        await onA.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })
        await onA.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(doneA), { qos: 1 })
      })(),
      (async () => {
        await onB.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })
        await onB.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(doneB), { qos: 1 })
      })()
    ])
    const ids = (await arrived).map((m) => idOf(m.payload))
    assert.equal(ids.filter((id) => id === event.id).length, 1, `round ${round}: ${JSON.stringify(ids)}`)
    assert.deepEqual(new Set(ids), new Set([event.id, doneA.id, doneB.id]))
  }
  const duplicates = (sample(await a.metrics.metrics(), 'ce_broker_events_total', { outcome: 'duplicate' }) ?? 0) +
    (sample(await b.metrics.metrics(), 'ce_broker_events_total', { outcome: 'duplicate' }) ?? 0)
  assert.equal(duplicates, 5)
})
