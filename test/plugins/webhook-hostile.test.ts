import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Agent, request } from 'undici'
import { MAX_JSON_DEPTH, type Broker } from '../../src/index.js'
import { DeniedAddressError, UrlPolicy } from '../../plugins/webhooks/index.js'
import { collectMessages, connect, httpUrl, mqttUrl, nextMessage, sample, startBroker } from '../helpers/broker.js'
import { defer } from '../helpers/cleanup.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved, parseRecord, type RecordData } from '../helpers/events.js'
import { listenOn, receiver } from '../helpers/receiver.js'
import { rebindingResolver, startBrokerResolving } from '../helpers/rebinding.js'

/** No validation rule matches it: with `validation.default` at `pass`, anything published here is accepted as it is. */
const UNVALIDATED_TOPIC = 'plain/a'

/** The events of a valid CloudEvent with `data` replaced by the JSON text `data`. */
function eventWithData (data: string): { readonly id: string, readonly text: string } {
  const event = bookingReserved()
  return { id: String(event.id), text: JSON.stringify({ ...event, data: '@data@' }).replace('"@data@"', data) }
}

async function register (broker: Broker, body: object): Promise<{ status: number, json: Record<string, unknown> }> {
  const res = await fetch(httpUrl(broker, '/api/webhooks'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  return { status: res.status, json: await res.json() as Record<string, unknown> }
}

/** Poll `check` every 20 ms until it is true; fails after `limitMs`. Waits for a state, it times nothing. */
async function until (check: () => Promise<boolean>, what: string, limitMs = 10_000): Promise<void> {
  const deadline = Date.now() + limitMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`still waiting for ${what} after ${limitMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

async function deadLetters (broker: Broker): Promise<RecordData[]> {
  const { items } = await (await fetch(httpUrl(broker, '/api/dlq'))).json() as { items: Array<{ record: { data: RecordData } }> }
  return items.map((item) => item.record.data)
}

async function queuedOf (broker: Broker): Promise<Record<string, number>> {
  const { subscriptions } = await (await fetch(httpUrl(broker, '/api/webhooks'))).json() as { subscriptions: Array<{ id: string, queued: number }> }
  return Object.fromEntries(subscriptions.map((s) => [s.id, s.queued]))
}

test(`CloudEvents nested deeper than MAX_JSON_DEPTH on an unvalidated topic are no webhook delivery: they fill no queue, and another subscription gets its events`, async (t) => {
  const broker = await startBroker(t, { webhooks: { maxQueued: 50 } })
  const plain = await receiver(t)
  const other = await receiver(t)
  const deep = await register(broker, { service_id: 'plain', webhook_url: plain.url, topic_filters: ['plain/#'] })
  const second = await register(broker, { service_id: 'second', webhook_url: other.url, topic_filters: ['albergue/#'] })
  assert.deepEqual([deep.status, second.status], [201, 201])
  const publisher = await connect(t, mqttUrl(broker))

  // as many as the queue holds: before the fix each one took a place in it for good
  const nested = '['.repeat(20_000) + ']'.repeat(20_000)
  for (let i = 0; i < 50; i++) await publisher.publishAsync(UNVALIDATED_TOPIC, eventWithData(nested).text, { qos: 1 })
  // as deep as allowed (the event object is the first level): still a CloudEvent, delivered
  const atLimit = eventWithData('['.repeat(MAX_JSON_DEPTH - 1) + ']'.repeat(MAX_JSON_DEPTH - 1))
  await publisher.publishAsync(UNVALIDATED_TOPIC, atLimit.text, { qos: 1 })
  const events = Array.from({ length: 5 }, () => bookingReserved())
  for (const event of events) await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })

  const delivered = await other.next(5)
  assert.deepEqual(delivered.map((r) => r.headers['ce-id']), events.map((e) => e.id))
  const [limitRequest] = await plain.next(1)
  assert.equal(limitRequest?.headers['ce-id'], atLimit.id)

  const metrics = async (): Promise<string> => await broker.metrics.metrics()
  await until(async () => sample(await metrics(), 'ce_broker_webhook_deliveries_total', { subscription: String(second.json.id), outcome: 'delivered' }) === 5, 'the 5 deliveries counted')
  await until(async () => sample(await metrics(), 'ce_broker_webhook_queue_depth') === 0, 'an empty queue')
  const text = await metrics()
  assert.equal(sample(text, 'ce_broker_webhook_deliveries_total', { outcome: 'queue_full' }), undefined, 'nothing found the queue full')
  assert.equal(sample(text, 'ce_broker_webhook_deliveries_total', { outcome: 'failed' }), undefined, 'nothing failed')
  assert.deepEqual(await queuedOf(broker), { [String(deep.json.id)]: 0, [String(second.json.id)]: 0 })
  assert.deepEqual(await deadLetters(broker), [], 'not CloudEvents, like any other payload on an unvalidated topic: nothing to dead-letter')
  assert.equal(plain.requests.length, 1, 'only the event at the limit reached the deep subscription')
})

test('an event whose request cannot be built is dead-lettered as delivery_failed naming the error, and leaves the queue free', async (t) => {
  const broker = await startBroker(t, { webhooks: { maxQueued: 50 } })
  const plain = await receiver(t)
  const other = await receiver(t)
  // binary mode (the default) cannot carry an object as an attribute: building its request throws a
  // TypeError; no rule checks this topic, so such an event is accepted
  const failing = await register(broker, { service_id: 'plain', webhook_url: plain.url, topic_filters: ['plain/#'] })
  const second = await register(broker, { service_id: 'second', webhook_url: other.url, topic_filters: ['albergue/#'] })
  const watcher = await connect(t, mqttUrl(broker))
  await watcher.subscribeAsync('$DLQ/#', { qos: 1 })
  const dead = collectMessages(watcher, 50, 10_000)
  const publisher = await connect(t, mqttUrl(broker))

  for (let i = 0; i < 50; i++) await publisher.publishAsync(UNVALIDATED_TOPIC, JSON.stringify(bookingReserved({}, { extra: { a: 1 } })), { qos: 1 })
  const records = (await dead).map((m) => parseRecord(m.payload).data)
  for (const record of records) {
    assert.equal(record.reason, 'delivery_failed')
    assert.equal(record.subscription, failing.json.id)
    assert.equal(record.attempts, 1, 'building again would fail again: not retried')
    assert.match(record.errors[0]?.message ?? '', /TypeError: attribute "extra" is an object: binary mode carries string, number and boolean attributes only/)
  }

  const events = Array.from({ length: 5 }, () => bookingReserved())
  for (const event of events) await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })
  const delivered = await other.next(5)
  assert.deepEqual(delivered.map((r) => r.headers['ce-id']), events.map((e) => e.id))
  await until(async () => sample(await broker.metrics.metrics(), 'ce_broker_webhook_deliveries_total', { subscription: String(second.json.id), outcome: 'delivered' }) === 5, 'the 5 deliveries counted')
  const text = await broker.metrics.metrics()
  assert.equal(sample(text, 'ce_broker_webhook_deliveries_total', { subscription: String(failing.json.id), outcome: 'failed' }), 50)
  assert.equal(sample(text, 'ce_broker_webhook_deliveries_total', { outcome: 'queue_full' }), undefined)
  assert.equal(sample(text, 'ce_broker_webhook_queue_depth'), 0)
  assert.deepEqual(await queuedOf(broker), { [String(failing.json.id)]: 0, [String(second.json.id)]: 0 })
  assert.equal(plain.requests.length, 0)
})


/** Loopback denied, as an operator who keeps webhooks off the broker's host would configure it. */
const NO_LOOPBACK = ['127.0.0.0/8', '::1/128']

test('POST /api/webhooks answers 400 naming the address for every spelling of the unspecified address, which reaches the local host', async (t) => {
  const broker = await startBroker(t, { webhooks: { denyNetworks: NO_LOOPBACK } })
  // a listener on every address of the host: without the check each of these URLs would reach it
  const local = await listenOn(t, '::')
  const local4 = 'in a denied network (0.0.0.0/8, always denied: it reaches the local host)'
  const cases: Array<[string, string]> = [
    [`http://0.0.0.0:${local.port}/`, `webhook_url address 0.0.0.0 is ${local4}`],
    [`http://0:${local.port}/`, `webhook_url address 0.0.0.0 is ${local4}`],
    [`http://0.1.2.3:${local.port}/`, `webhook_url address 0.1.2.3 is ${local4}`],
    [`http://[::]:${local.port}/`, 'webhook_url address :: is in a denied network (::/128, always denied: it reaches the local host)'],
    [`http://[::ffff:0.0.0.0]:${local.port}/`, `webhook_url address ::ffff:0:0 (IPv4 0.0.0.0) is ${local4}`],
    [`http://[64:ff9b::0.0.0.0]:${local.port}/`, `webhook_url address 64:ff9b:: (IPv4 0.0.0.0) is ${local4}`]
  ]
  for (const [url, why] of cases) {
    const reply = await register(broker, { service_id: 's', webhook_url: url, topic_filters: ['#'] })
    assert.equal(reply.status, 400, url)
    assert.equal((reply.json.error as { message: string }).message, why, url)
  }
  assert.equal(local.hits(), 0)
})

test('the connector refuses the unspecified address, as a literal and when a name resolves to it at delivery: dead-lettered after one attempt, nothing reaches the host', async (t) => {
  const local = await listenOn(t, '::')
  // the address literals, through the connector alone
  const agent = new Agent({ connect: new UrlPolicy(NO_LOOPBACK).connector() })
  defer(t, async () => { await agent.close() })
  for (const host of ['0.0.0.0', '[::]']) {
    await assert.rejects(request(`http://${host}:${local.port}/x`, { method: 'POST', body: 'x', dispatcher: agent }), (err: unknown) => {
      assert.ok(err instanceof DeniedAddressError, String(err))
      return true
    }, host)
  }

  // a name: allowed at registration (a documentation address, never connected to), the unspecified address at delivery
  const { resolve, asked } = rebindingResolver('192.0.2.1', '0.0.0.0')
  const { broker } = await startBrokerResolving(t, {
    denyNetworks: NO_LOOPBACK,
    resolve,
    subscriptions: [{ service_id: 'rebinder', webhook_url: `http://rebind.test:${local.port}/hooks`, topic_filters: ['albergue/#'] }]
  })
  assert.deepEqual(asked, ['rebind.test'])

  const watcher = await connect(t, mqttUrl(broker))
  await watcher.subscribeAsync('$DLQ/#', { qos: 1 })
  const dead = nextMessage(watcher, `$DLQ/${BOOKING_RESERVED_TOPIC}`, 10_000)
  const publisher = await connect(t, mqttUrl(broker))
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved()), { qos: 1 })
  const record = parseRecord((await dead).payload).data
  assert.equal(record.reason, 'delivery_failed')
  assert.equal(record.attempts, 1, 'a refused connection is not retried')
  assert.match(record.errors[0]?.message ?? '', /rebind\.test resolved to 0\.0\.0\.0, which is in a denied network \(0\.0\.0\.0\/8/)
  assert.equal(local.hits(), 0, 'nothing reached the local host')
})
