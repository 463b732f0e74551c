import assert from 'node:assert/strict'
import { test } from 'node:test'
import { HTTP } from 'cloudevents'
import { Webhook } from 'standardwebhooks'
import { collectMessages, connect, httpUrl, mqttUrl, sample, startBroker } from '../helpers/broker.js'
import { receiver } from '../helpers/receiver.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved, parseRecord } from '../helpers/events.js'
import { redisUnavailable, startRedis } from '../helpers/redis.js'

const SECRET = 'a-shared-secret-of-the-booking-team'

async function register (brokerHttp: string, body: object, path = '/api/webhooks'): Promise<{ status: number, json: Record<string, unknown> }> {
  const res = await fetch(brokerHttp + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  return { status: res.status, json: await res.json() as Record<string, unknown> }
}

const FAST_RETRY = { maxAttempts: 3, initialDelayMs: 5, maxDelayMs: 20 }

test('a binary-mode delivery parses with the CloudEvents SDK and its Standard Webhooks signature verifies', async (t) => {
  const broker = await startBroker(t)
  const hook = await receiver(t)
  const created = await register(httpUrl(broker), { service_id: 'government-gateway', webhook_url: hook.url, topic_filters: ['albergue/v1/booking/#'], secret: SECRET })
  assert.equal(created.status, 201)
  const publisher = await connect(t, mqttUrl(broker))
  const event = bookingReserved({}, { correlationid: 'flow-1' })
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })

  const [request] = await hook.next(1)
  assert.ok(request !== undefined)
  const parsed = HTTP.toEvent({ headers: request.headers, body: request.body })
  assert.ok(!Array.isArray(parsed))
  assert.equal(parsed.id, event.id)
  assert.equal(parsed.type, event.type)
  assert.equal(parsed.source, event.source)
  assert.equal(parsed.correlationid, 'flow-1')
  assert.deepEqual(parsed.data, event.data)
  assert.equal(request.headers['ce-time'], event.time, 'the time attribute as sent')
  assert.equal(request.headers['content-type'], 'application/json')
  assert.doesNotThrow(() => new Webhook(SECRET, { format: 'raw' }).verify(request.body, request.headers))
  assert.match(request.headers['webhook-id'] ?? '', /^msg_/)
})

test('subscriptions: 201 then 200 for the same service and URL, listed without their secret, deleted by id; the seed alias and dotted filters give structured mode', async (t) => {
  const broker = await startBroker(t)
  const hook = await receiver(t)
  const first = await register(httpUrl(broker), { service_id: 'notification', webhook_url: hook.url, topic_filters: ['albergue.v1.booking.*'], secret: SECRET, mode: 'structured' }, '/api/mqtt/register-webhook')
  assert.equal(first.status, 201)
  assert.deepEqual(first.json.mqttFilters, ['albergue/v1/booking/#'])
  const again = await register(httpUrl(broker), { service_id: 'notification', webhook_url: hook.url, topic_filters: ['albergue.v1.booking.*', 'albergue/v1/payment/+'], mode: 'structured' })
  assert.equal(again.status, 200)
  assert.equal(again.json.id, first.json.id)
  const listed = await (await fetch(httpUrl(broker, '/api/webhooks'))).json() as { subscriptions: Array<Record<string, unknown>> }
  assert.equal(listed.subscriptions.length, 1)
  assert.equal(listed.subscriptions[0]?.secret, undefined)
  assert.deepEqual(listed.subscriptions[0]?.mqttFilters, ['albergue/v1/booking/#', 'albergue/v1/payment/+'])

  const publisher = await connect(t, mqttUrl(broker))
  const event = bookingReserved()
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })
  const [request] = await hook.next(1)
  assert.match(request?.headers['content-type'] ?? '', /^application\/cloudevents\+json/)
  assert.deepEqual(JSON.parse(request?.body ?? ''), event, 'structured mode sends the event as published')

  const id = String(first.json.id)
  assert.equal((await fetch(httpUrl(broker, `/api/webhooks/${id}`), { method: 'DELETE' })).status, 204)
  assert.equal((await fetch(httpUrl(broker, `/api/webhooks/${id}`), { method: 'DELETE' })).status, 404)
})

test('URLs that are not http(s), carry credentials or point at metadata addresses are refused with 400 naming why', async (t) => {
  const broker = await startBroker(t)
  const cases: Array<[string, RegExp]> = [
    ['ftp://127.0.0.1/x', /must be http or https/],
    ['http://user:pw@127.0.0.1/x', /must not carry credentials/],
    ['http://169.254.169.254/latest/meta-data', /169\.254\.169\.254 is in a denied network/],
    ['not a url', /is not a URL/]
  ]
  for (const [url, why] of cases) {
    const reply = await register(httpUrl(broker), { service_id: 's', webhook_url: url, topic_filters: ['#'] })
    assert.equal(reply.status, 400, url)
    assert.match(String((reply.json.error as { message: string }).message), why)
  }
  const badFilter = await register(httpUrl(broker), { service_id: 's', webhook_url: 'http://127.0.0.1/x', topic_filters: ['albergue/#/x'] })
  assert.equal(badFilter.status, 400)
})

test('408, 429 and 5xx are retried with the same webhook-id until the endpoint takes the event', async (t) => {
  const broker = await startBroker(t)
  const statuses = [503, 429, 408, 200]
  const hook = await receiver(t, (n, res) => {
    const status = statuses[n - 1] ?? 200
    res.writeHead(status, status === 429 ? { 'retry-after': '0' } : {}).end()
  })
  await register(httpUrl(broker), { service_id: 'payments', webhook_url: hook.url, topic_filters: ['albergue/#'], secret: SECRET, retry: { ...FAST_RETRY, maxAttempts: 5 } })
  const publisher = await connect(t, mqttUrl(broker))
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved()), { qos: 1 })
  const requests = await hook.next(4)
  assert.equal(new Set(requests.map((r) => r.headers['webhook-id'])).size, 1)
  // the last answer is counted once the broker has read it: wait for that, a bounded poll
  const delivered = /ce_broker_webhook_deliveries_total\{subscription="[^"]+",outcome="delivered"\} 1/
  for (let i = 0; i < 100 && !delivered.test(await broker.metrics.metrics()); i++) await new Promise((resolve) => setTimeout(resolve, 20))
  assert.match(await broker.metrics.metrics(), delivered)
  assert.equal(hook.requests.length, 4)
})

test('Retry-After is honoured over the backoff: a 10-minute backoff ceiling, and the endpoint asks for 1 s', async (t) => {
  const broker = await startBroker(t)
  const hook = await receiver(t, (n, res) => { res.writeHead(n === 1 ? 503 : 200, n === 1 ? { 'retry-after': '1' } : {}).end() })
  // without Retry-After the retry would wait a random time below 10 minutes
  await register(httpUrl(broker), { service_id: 'payments', webhook_url: hook.url, topic_filters: ['albergue/#'], retry: { maxAttempts: 3, initialDelayMs: 600_000, maxDelayMs: 600_000 } })
  const publisher = await connect(t, mqttUrl(broker))
  const event = bookingReserved()
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })
  const requests = await hook.next(2)
  assert.deepEqual(requests.map((r) => r.headers['ce-id']), [event.id, event.id])
})

test('a 4xx fails at once, exhausted retries fail after the last attempt, 410 disables: each is dead-lettered as delivery_failed', async (t) => {
  const broker = await startBroker(t)
  const watcher = await connect(t, mqttUrl(broker))
  await watcher.subscribeAsync('$DLQ/#', { qos: 1 })
  const refusing = await receiver(t, (_n, res) => { res.writeHead(400).end() })
  const failing = await receiver(t, (_n, res) => { res.writeHead(500).end() })
  const gone = await receiver(t, (_n, res) => { res.writeHead(410).end() })
  const ids: Record<string, string> = {}
  for (const [name, hook] of [['refusing', refusing], ['failing', failing], ['gone', gone]] as const) {
    const reply = await register(httpUrl(broker), { service_id: name, webhook_url: hook.url, topic_filters: ['albergue/#'], retry: FAST_RETRY })
    ids[name] = String(reply.json.id)
  }
  const dead = collectMessages(watcher, 3, 10_000)
  const publisher = await connect(t, mqttUrl(broker))
  const event = bookingReserved()
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })
  const records = (await dead).map((m) => parseRecord(m.payload).data)
  const bySubscription = new Map(records.map((r) => [r.subscription, r]))
  assert.deepEqual([bySubscription.get(ids.refusing)?.attempts, bySubscription.get(ids.refusing)?.lastStatus], [1, 400])
  assert.deepEqual([bySubscription.get(ids.failing)?.attempts, bySubscription.get(ids.failing)?.lastStatus], [3, 500])
  assert.deepEqual([bySubscription.get(ids.gone)?.attempts, bySubscription.get(ids.gone)?.lastStatus], [1, 410])
  assert.ok(records.every((r) => r.reason === 'delivery_failed' && r.topic === BOOKING_RESERVED_TOPIC && (r.payload as { id: string }).id === event.id))
  assert.deepEqual([refusing.requests.length, failing.requests.length, gone.requests.length], [1, 3, 1])

  const listed = await (await fetch(httpUrl(broker, '/api/webhooks'))).json() as { subscriptions: Array<{ id: string, disabled?: { reason: string } }> }
  assert.match(listed.subscriptions.find((s) => s.id === ids.gone)?.disabled?.reason ?? '', /410 Gone/)
  assert.equal(listed.subscriptions.find((s) => s.id === ids.failing)?.disabled, undefined)
})

test('an endpoint that never answers slows neither the publisher nor the other endpoints', async (t) => {
  const broker = await startBroker(t, { webhooks: { defaults: { retry: { maxAttempts: 1, initialDelayMs: 0, maxDelayMs: 0 }, timeoutMs: 60_000, concurrency: 2 } } })
  const stuck = await receiver(t, () => { /* never answers */ })
  const fast = await receiver(t)
  await register(httpUrl(broker), { service_id: 'stuck', webhook_url: stuck.url, topic_filters: ['albergue/#'] })
  await register(httpUrl(broker), { service_id: 'fast', webhook_url: fast.url, topic_filters: ['albergue/#'] })
  const publisher = await connect(t, mqttUrl(broker))
  const events = Array.from({ length: 20 }, () => bookingReserved())
  // every PUBACK arrives although the stuck endpoint holds its two connections
  await Promise.all(events.map(async (event) => await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })))
  const delivered = await fast.next(20)
  assert.deepEqual(new Set(delivered.map((r) => r.headers['ce-id'])), new Set(events.map((e) => e.id)))
  await stuck.next(2)
  assert.equal(stuck.requests.length, 2, 'the stuck endpoint holds its concurrency, no more')
})

test('the circuit opens after failures in a row, holds deliveries instead of failing them, and a successful probe closes it', async (t) => {
  const broker = await startBroker(t, { webhooks: { breaker: { failures: 3, halfOpenAfterMs: 3000 } } })
  // fails three times, then takes everything
  const hook = await receiver(t, (n, res) => { res.writeHead(n <= 3 ? 503 : 200).end() })
  const created = await register(httpUrl(broker), { service_id: 'flaky', webhook_url: hook.url, topic_filters: ['albergue/#'], retry: { maxAttempts: 20, initialDelayMs: 1, maxDelayMs: 5 } })
  const id = String(created.json.id)
  const breakerOf = async (): Promise<unknown> => {
    const listed = await (await fetch(httpUrl(broker, '/api/webhooks'))).json() as { subscriptions: Array<{ id: string, breaker: unknown }> }
    return listed.subscriptions.find((s) => s.id === id)?.breaker
  }
  assert.equal(await breakerOf(), 'closed')

  const publisher = await connect(t, mqttUrl(broker))
  const events = [bookingReserved(), bookingReserved()]
  for (const event of events) await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })
  await hook.next(3)
  // the third answer opens the circuit once the broker has read it: a bounded poll, well inside the 3 s it stays open
  for (let i = 0; i < 100 && await breakerOf() !== 'open'; i++) await new Promise((resolve) => setTimeout(resolve, 10))
  assert.equal(await breakerOf(), 'open')
  assert.match(await broker.metrics.metrics(), new RegExp(`ce_broker_webhook_breaker_state\\{subscription="${id}"\\} 2`))
  // the three failures opened it before a 20-attempt budget ran out: once it closes, both arrive
  const delivered = await hook.next(5)
  assert.deepEqual(new Set(delivered.slice(3).map((r) => r.headers['ce-id'])), new Set(events.map((e) => e.id)))
  assert.equal(await breakerOf(), 'closed')
  const dlq = await (await fetch(httpUrl(broker, '/api/dlq'))).json() as { items: unknown[] }
  assert.deepEqual(dlq.items, [], 'held deliveries are not failed')
})

test('replaying a delivery_failed dead letter delivers it again to that subscription only, and removes it once delivered', async (t) => {
  const broker = await startBroker(t)
  let healthy = false
  const flaky = await receiver(t, (_n, res) => { res.writeHead(healthy ? 200 : 500).end() })
  const other = await receiver(t)
  const created = await register(httpUrl(broker), { service_id: 'flaky', webhook_url: flaky.url, topic_filters: ['albergue/#'], retry: { maxAttempts: 2, initialDelayMs: 1, maxDelayMs: 5 } })
  await register(httpUrl(broker), { service_id: 'other', webhook_url: other.url, topic_filters: ['albergue/#'] })
  const watcher = await connect(t, mqttUrl(broker))
  await watcher.subscribeAsync('$DLQ/#', { qos: 1 })
  const dead = collectMessages(watcher, 1, 10_000)
  const publisher = await connect(t, mqttUrl(broker))
  const event = bookingReserved()
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })
  assert.equal(parseRecord((await dead)[0]?.payload ?? Buffer.from('{}')).data.subscription, created.json.id)
  await other.next(1)

  const listed = await (await fetch(httpUrl(broker, '/api/dlq'))).json() as { items: Array<{ id: string }> }
  const deadLetterId = listed.items[0]?.id ?? ''
  healthy = true
  const replay = await fetch(httpUrl(broker, `/api/dlq/${deadLetterId}/replay`), { method: 'POST' })
  assert.equal(replay.status, 202)
  assert.deepEqual(await replay.json(), { redelivering: true, id: deadLetterId, subscription: created.json.id })
  const requests = await flaky.next(3)
  assert.equal(requests[2]?.headers['ce-id'], event.id)
  // removed once the broker has read the 200: a bounded poll
  let left: unknown[] = ['?']
  for (let i = 0; i < 100 && left.length > 0; i++) {
    left = ((await (await fetch(httpUrl(broker, '/api/dlq'))).json()) as { items: unknown[] }).items
    if (left.length > 0) await new Promise((resolve) => setTimeout(resolve, 20))
  }
  assert.deepEqual(left, [])
  assert.equal(other.requests.length, 1, 'the other subscription got the event once, not the replay')
})

test('replaying a delivery_failed dead letter whose subscription is gone answers 409', async (t) => {
  const broker = await startBroker(t)
  const failing = await receiver(t, (_n, res) => { res.writeHead(400).end() })
  const created = await register(httpUrl(broker), { service_id: 'gone-soon', webhook_url: failing.url, topic_filters: ['albergue/#'] })
  const watcher = await connect(t, mqttUrl(broker))
  await watcher.subscribeAsync('$DLQ/#', { qos: 1 })
  const dead = collectMessages(watcher, 1, 10_000)
  const publisher = await connect(t, mqttUrl(broker))
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved()), { qos: 1 })
  await dead
  await fetch(httpUrl(broker, `/api/webhooks/${String(created.json.id)}`), { method: 'DELETE' })
  const listed = await (await fetch(httpUrl(broker, '/api/dlq'))).json() as { items: Array<{ id: string }> }
  const replay = await fetch(httpUrl(broker, `/api/dlq/${listed.items[0]?.id ?? ''}/replay`), { method: 'POST' })
  assert.equal(replay.status, 409)
  assert.match(((await replay.json()) as { error: { message: string } }).error.message, /no longer exists/)
})

test('with Redis, a subscription registered on one node is known to the others, and each event is delivered once, by the node it entered', { skip: redisUnavailable() ?? false }, async (t) => {
  const redis = await startRedis(t)
  const a = await startBroker(t, { nodeId: 'node-a', redis: { url: redis.url } })
  const b = await startBroker(t, { nodeId: 'node-b', redis: { url: redis.url } })
  const hook = await receiver(t)
  const created = await register(httpUrl(a), { service_id: 'registry', webhook_url: hook.url, topic_filters: ['albergue/#'] })
  const listedOn = async (broker: typeof a): Promise<string[]> => {
    const listed = await (await fetch(httpUrl(broker, '/api/webhooks'))).json() as { subscriptions: Array<{ id: string }> }
    return listed.subscriptions.map((s) => s.id)
  }
  // node-b hears of it over pub/sub: a bounded poll
  for (let i = 0; i < 100 && (await listedOn(b)).length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 20))
  assert.deepEqual(await listedOn(b), [created.json.id])

  const onA = await connect(t, mqttUrl(a))
  const onB = await connect(t, mqttUrl(b))
  const [first, second] = [bookingReserved(), bookingReserved()]
  await onA.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(first), { qos: 1 })
  await onB.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(second), { qos: 1 })
  const requests = await hook.next(2)
  assert.deepEqual(requests.map((r) => r.headers['ce-id']).sort(), [first.id, second.id].sort())

  assert.equal((await fetch(httpUrl(b, `/api/webhooks/${String(created.json.id)}`), { method: 'DELETE' })).status, 204)
  for (let i = 0; i < 100 && (await listedOn(a)).length > 0; i++) await new Promise((resolve) => setTimeout(resolve, 20))
  assert.deepEqual(await listedOn(a), [])
  // a marker after the deletion: nothing more reaches the receiver
  const watcher = await connect(t, mqttUrl(a))
  await watcher.subscribeAsync('albergue/#', { qos: 1 })
  const marker = collectMessages(watcher, 1)
  await onA.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved()), { qos: 1 })
  await marker
  assert.equal(hook.requests.length, 2)
})

/** Poll `check` every 50 ms until it is true; fails after `limitMs`. Waits for a state, it times nothing. */
async function until (check: () => Promise<boolean>, what: string, limitMs = 20_000): Promise<void> {
  const deadline = Date.now() + limitMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`still waiting for ${what} after ${limitMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

test('with Redis, deliveries wait in the shared queue: events entering both nodes reach the endpoint once each', { skip: redisUnavailable() ?? false }, async (t) => {
  const redis = await startRedis(t)
  const a = await startBroker(t, { nodeId: 'node-a', redis: { url: redis.url } })
  const b = await startBroker(t, { nodeId: 'node-b', redis: { url: redis.url } })
  const events = Array.from({ length: 30 }, () => bookingReserved())
  // every fourth event's first request fails with 503: its retry goes back to Redis as a delayed job
  const flaky = new Set(events.filter((_e, i) => i % 4 === 0).map((e) => e.id))
  const answered: Array<{ id: string, status: number }> = []
  const hook = await receiver(t, (n, res) => {
    const id = hook.requests[n - 1]?.headers['ce-id'] ?? ''
    const status = flaky.delete(id) ? 503 : 200
    answered.push({ id, status })
    res.writeHead(status).end()
  })
  await register(httpUrl(a), { service_id: 'payments', webhook_url: hook.url, topic_filters: ['albergue/#'], retry: FAST_RETRY })
  const onA = await connect(t, mqttUrl(a))
  const onB = await connect(t, mqttUrl(b))
  await until(async () => (await (await fetch(httpUrl(b, '/api/webhooks'))).json() as { subscriptions: unknown[] }).subscriptions.length === 1, 'node-b to know the subscription')

  for (const [i, event] of events.entries()) await (i % 2 === 0 ? onA : onB).publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })
  const delivered = async (): Promise<number> => {
    let n = 0
    for (const broker of [a, b]) n += sample(await broker.metrics.metrics(), 'ce_broker_webhook_deliveries_total', { outcome: 'delivered' }) ?? 0
    return n
  }
  await until(async () => await delivered() === events.length, 'every event delivered')
  // the queue in Redis is empty: nothing more can come
  await until(async () => sample(await a.metrics.metrics(), 'ce_broker_webhook_queue_depth') === 0, 'an empty queue')
  const accepted = answered.filter((r) => r.status === 200).map((r) => r.id)
  assert.deepEqual(accepted.sort(), events.map((e) => e.id).sort(), 'each event delivered once')
  assert.equal(answered.length, events.length + Math.ceil(events.length / 4), 'one extra request per flaky event')
  assert.equal(flaky.size, 0)
})

test('with Redis, removing a subscription drops its waiting deliveries: registering it again does not bring them back', { skip: redisUnavailable() ?? false }, async (t) => {
  const redis = await startRedis(t)
  const broker = await startBroker(t, { redis: { url: redis.url } })
  let failing = true
  const hook = await receiver(t, (_n, res) => { res.writeHead(failing ? 503 : 200).end() })
  const body = { service_id: 'notifications', webhook_url: hook.url, topic_filters: ['albergue/#'], retry: { maxAttempts: 5, initialDelayMs: 600_000, maxDelayMs: 600_000 } }
  const created = await register(httpUrl(broker), body)
  const publisher = await connect(t, mqttUrl(broker))
  const old = bookingReserved()
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(old), { qos: 1 })
  // tried once, then waiting in Redis for a retry minutes away
  await hook.next(1)
  assert.equal((await fetch(httpUrl(broker, `/api/webhooks/${String(created.json.id)}`), { method: 'DELETE' })).status, 204)

  failing = false
  await register(httpUrl(broker), { ...body, retry: FAST_RETRY })
  const fresh = bookingReserved()
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(fresh), { qos: 1 })
  const [, second] = await hook.next(2)
  assert.equal(second?.headers['ce-id'], fresh.id)
  await until(async () => sample(await broker.metrics.metrics(), 'ce_broker_webhook_queue_depth') === 0, 'an empty queue')
  assert.equal(hook.requests.length, 2, 'the old delivery is gone')
})

/** A broker whose deliveries expire 400 ms after their event was accepted, retried far more often than that, to an endpoint that always answers 503. */
async function expiringDelivery (t: Parameters<typeof startBroker>[0], redisUrl?: string): Promise<void> {
  const broker = await startBroker(t, {
    ...(redisUrl === undefined ? {} : { redis: { url: redisUrl } }),
    webhooks: { defaults: { ttlMs: 400, retry: { maxAttempts: 100, initialDelayMs: 20, maxDelayMs: 40 } }, breaker: { failures: 1000, halfOpenAfterMs: 30_000 } }
  })
  const watcher = await connect(t, mqttUrl(broker))
  await watcher.subscribeAsync('$DLQ/#', { qos: 1 })
  let healthy = false
  const failing = await receiver(t, (_n, res) => { res.writeHead(healthy ? 200 : 503).end() })
  const created = await register(httpUrl(broker), { service_id: 'failing', webhook_url: failing.url, topic_filters: ['albergue/#'] })
  const dead = collectMessages(watcher, 1, 10_000)
  const publisher = await connect(t, mqttUrl(broker))
  const event = bookingReserved()
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })
  const [record] = (await dead).map((m) => parseRecord(m.payload).data)
  assert.equal(record?.reason, 'expired')
  assert.equal(record?.subscription, created.json.id)
  assert.equal(record?.lastStatus, 503)
  assert.equal((record?.payload as { id: string }).id, event.id)
  // retried until the time-to-live passed, long before 100 attempts ran out
  assert.ok((record?.attempts ?? 0) >= 2 && (record?.attempts ?? 0) < 100, `attempts: ${record?.attempts}`)
  assert.equal(failing.requests.length, record?.attempts, 'no attempt after it expired')
  assert.match(await broker.metrics.metrics(), /ce_broker_webhook_deliveries_total\{subscription="[^"]+",outcome="expired"\} 1/)

  // replayed once the endpoint is back: delivered to that subscription again, not published again
  healthy = true
  const dlq = await (await fetch(httpUrl(broker, '/api/dlq'))).json() as { items: Array<{ id: string }> }
  const replay = await fetch(httpUrl(broker, `/api/dlq/${dlq.items[0]?.id ?? ''}/replay`), { method: 'POST' })
  assert.equal(replay.status, 202)
  const all = await failing.next((record?.attempts ?? 0) + 1)
  assert.equal(all.at(-1)?.headers['ce-id'], event.id)
  for (let i = 0; i < 100 && ((await (await fetch(httpUrl(broker, '/api/dlq'))).json()) as { items: unknown[] }).items.length > 0; i++) await new Promise((resolve) => setTimeout(resolve, 20))
  assert.deepEqual(((await (await fetch(httpUrl(broker, '/api/dlq'))).json()) as { items: unknown[] }).items, [], 'removed once delivered')
}

test('a delivery still failing when webhooks.defaults.ttlMs has passed is dead-lettered as expired, and a replay delivers it to that subscription again', async (t) => {
  await expiringDelivery(t)
})

test('with Redis, a stored delivery keeps the time its event was accepted: it expires as well', { skip: redisUnavailable() ?? false }, async (t) => {
  await expiringDelivery(t, (await startRedis(t)).url)
})
