/**
 * Review of issue 21's webhook delivery changes (intake backpressure, ordered delivery
 * per key): each test shows a defect a client or a receiver can hit, on real sockets
 * and real HTTP receivers. Each fails on the code it was written against.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import mqttPacket from 'mqtt-packet'
import type { Broker } from '../../src/index.js'
import { connect, httpUrl, mqttUrl, startBroker } from '../helpers/broker.js'
import { bookingReserved } from '../helpers/events.js'
import { rawConnect } from '../helpers/raw.js'
import { receiver } from '../helpers/receiver.js'

async function register (broker: Broker, body: Record<string, unknown>): Promise<string> {
  const res = await fetch(httpUrl(broker, '/api/webhooks'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  assert.equal(res.status, 201, await res.clone().text())
  return String(((await res.json()) as { id: string }).id)
}

async function queuedOf (broker: Broker, id: string): Promise<number> {
  const { subscriptions } = (await (await fetch(httpUrl(broker, '/api/webhooks'))).json()) as { subscriptions: Array<{ id: string, queued: number }> }
  return subscriptions.find((s) => s.id === id)?.queued ?? -1
}

test('publishes on a subscription\'s topic that are not CloudEvents leave its intake pending count up: an HTTP publish is refused 429 while nothing is queued for it', async (t) => {
  const broker = await startBroker(t, { webhooks: { intake: { highWater: 5, holdMs: 10_000 } } })
  const hook = await receiver(t)
  const id = await register(broker, { service_id: 'review', webhook_url: hook.url, topic_filters: ['misc/#', 'albergue/#'] })
  // a careless (or hostile) client: JSON that is no CloudEvent, on a topic no rule checks; accepted, never queued for the webhook
  const careless = await connect(t, mqttUrl(broker))
  for (let i = 0; i < 5; i++) await careless.publishAsync('misc/noise', JSON.stringify({ hello: i }), { qos: 1 })
  assert.equal(await queuedOf(broker, id), 0, 'nothing is queued for the subscription')
  // another sender's valid event: nothing is behind, it must be accepted
  const res = await fetch(httpUrl(broker, '/api/events'), { method: 'POST', headers: { 'content-type': 'application/cloudevents+json' }, body: JSON.stringify(bookingReserved()) })
  assert.notEqual(res.status, 429, 'an HTTP publish refused as if the subscription were behind, with nothing queued for it')
  assert.ok(res.status >= 200 && res.status < 300, `HTTP ${res.status}`)
  await hook.next(1)
})

test('ordered subscription: events of one key sent in order on one MQTT connection stay in order when the first is held by the intake gate for another subscription that is behind', async (t) => {
  const broker = await startBroker(t, { webhooks: { intake: { highWater: 2, holdMs: 1_500 } } })
  // T is behind: its receiver holds every request it gets
  const stuck = await receiver(t, () => { /* never answers: closed after the test */ })
  await register(broker, { service_id: 'review-slow', webhook_url: stuck.url, topic_filters: ['orders/slow'] })
  // S orders by partitionkey and sees both topics
  const ordered = await receiver(t)
  await register(broker, { service_id: 'review-ordered', webhook_url: ordered.url, topic_filters: ['orders/#'], ordering: 'partitionkey' })

  const filler = await connect(t, mqttUrl(broker))
  for (let i = 0; i < 2; i++) await filler.publishAsync('orders/slow', JSON.stringify(bookingReserved({}, { partitionkey: 'fill' })), { qos: 1 })
  await stuck.next(2)
  await ordered.next(2)

  // one connection sends seq 1 (bound for S and the stuck T) then seq 2 (bound for S only), in one write
  const raw = await rawConnect(t, broker.ports.mqtt)
  raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'review-ordered-pub', keepalive: 60 })
  assert.equal((await raw.next())?.cmd, 'connack')
  const first = bookingReserved({ seq: 1 }, { partitionkey: 'K' })
  const second = bookingReserved({ seq: 2 }, { partitionkey: 'K' })
  raw.sendBytes(Buffer.concat([
    mqttPacket.generate({ cmd: 'publish', topic: 'orders/slow', payload: JSON.stringify(first), qos: 1, messageId: 1, retain: false, dup: false }),
    mqttPacket.generate({ cmd: 'publish', topic: 'orders/fast', payload: JSON.stringify(second), qos: 1, messageId: 2, retain: false, dup: false })
  ]))
  const got = (await ordered.next(4, 20_000)).slice(2).map((r) => r.headers['ce-id'])
  assert.deepEqual(got, [first.id, second.id], 'S got the key\'s events out of the order they were sent')
})

test('ordered subscription embedded: after its endpoint answered 410 Gone (subscription disabled), the deliveries waiting in the key\'s lane are not sent to it', async (t) => {
  const broker = await startBroker(t)
  // 410 to the first request, 200 afterwards (an endpoint that came back, or another owner of the address)
  let gone: () => void = () => {}
  const hook = await receiver(t, (n, res) => { if (n === 1) gone = () => { res.writeHead(410).end() }; else res.writeHead(200).end() })
  const id = await register(broker, { service_id: 'review-gone', webhook_url: hook.url, topic_filters: ['orders/#'], ordering: 'partitionkey' })
  const publisher = await connect(t, mqttUrl(broker))
  // one key: the first is out, the next two wait in its lane
  for (let i = 1; i <= 3; i++) await publisher.publishAsync('orders/gone', JSON.stringify(bookingReserved({ seq: i }, { partitionkey: 'K' })), { qos: 1 })
  await hook.next(1)
  // the 410 comes once all three are queued
  gone()
  while (await queuedOf(broker, id) > 0) await new Promise((resolve) => setTimeout(resolve, 50))
  const { subscriptions } = (await (await fetch(httpUrl(broker, '/api/webhooks'))).json()) as { subscriptions: Array<{ id: string, disabled?: unknown }> }
  assert.ok(subscriptions.find((s) => s.id === id)?.disabled !== undefined, 'the subscription is disabled')
  assert.equal(hook.requests.length, 1, `${hook.requests.length - 1} deliveries sent to a subscription disabled by 410 Gone`)
})
