import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import { MemoryAuditTrail } from '../../plugins/audit/index.js'
import type { Broker } from '../../src/index.js'
import { connect, httpUrl, mqttUrl, nextMessage, startBroker } from '../helpers/broker.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved, parseRecord } from '../helpers/events.js'
import { receiver } from '../helpers/receiver.js'
import { redisUnavailable, startRedis } from '../helpers/redis.js'

const DOTTED = 'albergue.v1.booking.reserved'
const JSON_HEADERS = { 'content-type': 'application/json' }

interface ErrorReply { error: { code: string, message: string, details?: Array<{ path?: string, message?: string }> } }
interface Page { filter: string, messages: Array<{ cursor: string, topic: string, qos: number, retain: boolean, event: { id: string, type: string }, payload?: unknown }>, next: string }

async function post (url: string, body: unknown): Promise<{ status: number, json: unknown }> {
  const res = await fetch(url, { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify(body) })
  const text = await res.text()
  return { status: res.status, json: text === '' ? undefined : JSON.parse(text) }
}

async function page (broker: Broker, path: string): Promise<Page> {
  const res = await fetch(httpUrl(broker, path))
  assert.equal(res.status, 200, await res.clone().text())
  return await res.json() as Page
}

/** The data of the seed's manual test: a booking, without any envelope. */
function bookingData (overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { ...(bookingReserved().data as Record<string, unknown>), ...overrides }
}

test('the seed\'s dotted topic is the MQTT topic: validated, delivered to albergue/v1/booking/# and to a webhook on albergue.v1.booking.*', async (t) => {
  const broker = await startBroker(t)
  const hook = await receiver(t)
  const registered = await post(httpUrl(broker, '/api/webhooks'), { service_id: 'seed', webhook_url: hook.url, topic_filters: ['albergue.v1.booking.*'], mode: 'structured' })
  assert.equal(registered.status, 201, JSON.stringify(registered.json))
  const subscriber = await connect(t, mqttUrl(broker))
  await subscriber.subscribeAsync(['albergue/v1/booking/#', '$DLQ/#'], { qos: 1 })

  const event = bookingReserved()
  const delivered = nextMessage(subscriber)
  const reply = await post(httpUrl(broker, '/api/mqtt/publish'), { topic: DOTTED, payload: JSON.stringify(event), qos: 0, retain: false })
  assert.equal(reply.status, 202, JSON.stringify(reply.json))
  assert.deepEqual(reply.json, { accepted: true, topic: BOOKING_RESERVED_TOPIC }, 'a CloudEvent payload passes as it is')
  const message = await delivered
  assert.equal(message.topic, BOOKING_RESERVED_TOPIC)
  assert.deepEqual(JSON.parse(message.payload.toString()), event)
  const [request] = await hook.next(1)
  assert.equal((JSON.parse(request?.body ?? '{}') as { id?: string }).id, event.id)

  // validated like any event on albergue/#: an invalid one is refused and dead-lettered
  const dead = nextMessage(subscriber)
  const invalid = await post(httpUrl(broker, '/api/mqtt/publish'), { topic: DOTTED, payload: bookingReserved({ nights: 0 }) })
  assert.equal(invalid.status, 422, JSON.stringify(invalid.json))
  assert.equal((invalid.json as ErrorReply).error.code, 'schema_validation_failed')
  assert.equal((await dead).topic, `$DLQ/${BOOKING_RESERVED_TOPIC}`)
})

test('a payload that is only the event\'s data is wrapped in a CloudEvent of the topic\'s type, then validated', async (t) => {
  const broker = await startBroker(t)
  const subscriber = await connect(t, mqttUrl(broker))
  await subscriber.subscribeAsync(['albergue/#', 'plain/#', '$DLQ/#'], { qos: 1 })

  for (const [topic, payload] of [[DOTTED, JSON.stringify(bookingData())], [BOOKING_RESERVED_TOPIC, bookingData()]] as const) {
    const delivered = nextMessage(subscriber)
    const before = Date.now()
    const reply = await post(httpUrl(broker, '/api/mqtt/publish'), { topic, payload, qos: 0, retain: false })
    assert.equal(reply.status, 202, JSON.stringify(reply.json))
    const { id } = reply.json as { id: string }
    assert.deepEqual(reply.json, { accepted: true, topic: BOOKING_RESERVED_TOPIC, id })
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    const event = JSON.parse((await delivered).payload.toString()) as Record<string, unknown>
    assert.deepEqual({ ...event, time: 'checked' }, {
      specversion: '1.0',
      id,
      source: '/api/mqtt/publish',
      type: DOTTED,
      time: 'checked',
      datacontenttype: 'application/json',
      data: bookingData()
    })
    const time = Date.parse(String(event.time))
    assert.ok(time >= before - 1000 && time <= Date.now() + 1000, `time is now: ${String(event.time)}`)
  }

  const dead = nextMessage(subscriber)
  const invalid = await post(httpUrl(broker, '/api/mqtt/publish'), { topic: DOTTED, payload: { ...bookingData(), nights: 0 } })
  assert.equal(invalid.status, 422, JSON.stringify(invalid.json))
  const error = (invalid.json as ErrorReply).error
  assert.equal(error.code, 'schema_validation_failed')
  assert.deepEqual(error.details?.map((d) => d.path), ['/data/nights'])
  const record = parseRecord((await dead).payload)
  assert.equal(record.data.reason, 'schema_validation_failed')
  const kept = record.data.payload as Record<string, unknown>
  assert.deepEqual([kept.type, kept.source, (kept.data as Record<string, unknown>).nights], [DOTTED, '/api/mqtt/publish', 0], 'the wrapped event is what is dead-lettered')

  // a topic no rule validates is plain MQTT: dotted still maps, the payload is left alone
  const plain = nextMessage(subscriber, 'plain/text')
  assert.equal((await post(httpUrl(broker, '/api/mqtt/publish'), { topic: 'plain.text', payload: '{"hola":1}' })).status, 202)
  assert.equal((await plain).payload.toString(), '{"hola":1}')
})

/** Publish `count` valid events on the booking topic over HTTP; returns their ids in order. */
async function publishBookings (broker: Broker, count: number): Promise<string[]> {
  const ids: string[] = []
  for (let i = 0; i < count; i++) {
    const event = bookingReserved({ booking_id: `b-${i}` })
    const reply = await post(httpUrl(broker, '/api/mqtt/publish'), { topic: DOTTED, payload: event })
    assert.equal(reply.status, 202, JSON.stringify(reply.json))
    ids.push(String(event.id))
  }
  return ids
}

/** Poll `path` until its page holds `count` messages (the Redis stream is written once per event-loop turn), or fail after `timeoutMs`. */
async function pageWith (broker: Broker, path: string, count: number, timeoutMs = 5000): Promise<Page> {
  const until = Date.now() + timeoutMs
  for (;;) {
    const got = await page(broker, path)
    if (got.messages.length >= count || Date.now() > until) return got
    await new Promise((resolve) => { setTimeout(resolve, 20) })
  }
}

/** The messages route's contract, on either backend. */
async function messagesContract (t: TestContext, broker: Broker): Promise<void> {
  const publisher = await connect(t, mqttUrl(broker))
  const ids = await publishBookings(broker, 3)
  // another topic, a rejected event and a duplicate: none of them is a recent event on the booking topic
  const confirmed = { ...bookingReserved(), type: 'albergue.v1.booking.confirmed', data: { booking_id: 'b-1001', pilgrim_id: 'p-2002', confirmed_at: '2026-04-30T20:00:00Z' } }
  await publisher.publishAsync('albergue/v1/booking/confirmed', JSON.stringify(confirmed), { qos: 1 })
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved({ nights: 0 })), { qos: 1 })
  const last = bookingReserved({ booking_id: 'b-last' })
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(last), { qos: 1, retain: true })
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(last), { qos: 1 })
  ids.push(String(last.id))

  for (const form of [DOTTED, encodeURIComponent(BOOKING_RESERVED_TOPIC), 'albergue/v1/booking/reserved']) {
    const all = await pageWith(broker, `/api/mqtt/messages/${form}`, 4)
    assert.equal(all.filter, BOOKING_RESERVED_TOPIC)
    assert.deepEqual(all.messages.map((m) => m.event.id), ids, `${form}: accepted events only, newest last`)
  }
  const all = await page(broker, '/api/mqtt/messages/albergue.v1.booking.reserved')
  const newest = all.messages.at(-1)
  assert.deepEqual([newest?.topic, newest?.qos, newest?.retain, newest?.payload], [BOOKING_RESERVED_TOPIC, 1, true, last])
  assert.equal(new Set(all.messages.map((m) => m.cursor)).size, 4)

  const wide = await pageWith(broker, '/api/mqtt/messages/albergue.v1.booking.*', 5)
  assert.equal(wide.filter, 'albergue/v1/booking/#')
  assert.equal(wide.messages.length, 5)
  assert.equal(wide.messages[3]?.topic, 'albergue/v1/booking/confirmed')

  const recent = await page(broker, `/api/mqtt/messages/${DOTTED}?limit=2`)
  assert.deepEqual(recent.messages.map((m) => m.event.id), ids.slice(2), 'without since: the most recent, newest last')

  // paging forward from a cursor: since is exclusive, the oldest first, the same cursors every time
  const first = all.messages[0]?.cursor ?? ''
  const second = await page(broker, `/api/mqtt/messages/${DOTTED}?since=${encodeURIComponent(first)}&limit=2`)
  assert.deepEqual(second.messages.map((m) => m.event.id), ids.slice(1, 3))
  assert.deepEqual(second.messages.map((m) => m.cursor), all.messages.slice(1, 3).map((m) => m.cursor))
  const third = await page(broker, `/api/mqtt/messages/${DOTTED}?since=${encodeURIComponent(second.next)}&limit=2`)
  assert.deepEqual(third.messages.map((m) => m.event.id), ids.slice(3))
  const caughtUp = await page(broker, `/api/mqtt/messages/${DOTTED}?since=${encodeURIComponent(third.next)}`)
  assert.deepEqual(caughtUp.messages, [])
  const [later] = await publishBookings(broker, 1)
  const polled = await pageWith(broker, `/api/mqtt/messages/${DOTTED}?since=${encodeURIComponent(caughtUp.next)}`, 1)
  assert.deepEqual(polled.messages.map((m) => m.event.id), [later], 'the next poll gets only what came since')

  for (const query of ['?since=not-a-cursor', '?limit=0', '?limit=1001']) {
    const bad = await fetch(httpUrl(broker, `/api/mqtt/messages/${DOTTED}${query}`))
    assert.equal(bad.status, 400, query)
    assert.equal((await bad.json() as ErrorReply).error.code, 'bad_request')
  }
}

test('GET /api/mqtt/messages/:topic reads the accepted events from the audit trail (embedded: the node\'s ring)', async (t) => {
  const broker = await startBroker(t)
  await messagesContract(t, broker)
})

const skip = redisUnavailable() ?? false

test('GET /api/mqtt/messages/:topic reads the Redis audit stream with --redis, across nodes', { skip }, async (t) => {
  const server = await startRedis(t)
  const key = `test:audit:${Math.random().toString(36).slice(2)}`
  const broker = await startBroker(t, { redis: { url: server.url }, audit: { stream: { key, maxLen: 1000 } } })
  await messagesContract(t, broker)
  const other = await startBroker(t, { redis: { url: server.url }, audit: { stream: { key, maxLen: 1000 } } })
  const fromOther = await page(other, `/api/mqtt/messages/${DOTTED}`)
  assert.equal(fromOther.messages.length, 5, 'another node reads the same stream')
  assert.match(fromOther.next, /^\d+-\d+$/)
  // found by review: ids past 64 bits reached Redis and answered 500
  for (const since of ['99999999999999999999-0', '1-18446744073709551616', '18446744073709551615-18446744073709551615']) {
    const res = await fetch(httpUrl(other, `/api/mqtt/messages/${DOTTED}?since=${since}`))
    assert.equal(res.status, 400, since)
  }
})

test('POST /api/mqtt/subscribe registers interest for polling: 201 with the filter and where to poll from now on', async (t) => {
  const broker = await startBroker(t)
  await publishBookings(broker, 1)
  const reply = await post(httpUrl(broker, '/api/mqtt/subscribe'), { topic: 'albergue.v1.booking.*', qos: 1 })
  assert.equal(reply.status, 201, JSON.stringify(reply.json))
  const { topic, since, poll } = reply.json as { topic: string, since: string, poll: string }
  assert.equal(topic, 'albergue/v1/booking/#')
  assert.equal(poll, `/api/mqtt/messages/albergue%2Fv1%2Fbooking%2F%23?since=${encodeURIComponent(since)}`)
  const [after] = await publishBookings(broker, 1)
  const polled = await page(broker, poll)
  assert.deepEqual(polled.messages.map((m) => m.event.id), [after], 'only what came after the subscription')

  const bad = await post(httpUrl(broker, '/api/mqtt/subscribe'), { topic: 'albergue/#/x' })
  assert.equal(bad.status, 400)
  assert.equal((bad.json as ErrorReply).error.code, 'bad_request')
  assert.equal((await post(httpUrl(broker, '/api/mqtt/subscribe'), {})).status, 400)
})

test('the retained messages moved to GET /api/mqtt/retained/:topic', async (t) => {
  const broker = await startBroker(t)
  const event = bookingReserved()
  assert.equal((await post(httpUrl(broker, '/api/mqtt/publish'), { topic: DOTTED, payload: event, retain: true })).status, 202)
  const res = await fetch(httpUrl(broker, `/api/mqtt/retained/${encodeURIComponent(BOOKING_RESERVED_TOPIC)}`))
  assert.equal(res.status, 200)
  assert.deepEqual(await res.json(), { filter: BOOKING_RESERVED_TOPIC, messages: [{ topic: BOOKING_RESERVED_TOPIC, qos: 1, payload: event }] })
})

test('the memory trail keeps the newest maxEntries events; a cursor older than the ring, or of an earlier run, reads from the oldest kept', async () => {
  const trail = new MemoryAuditTrail(3, 1024 * 1024)
  const line = (n: number): Buffer => Buffer.from(JSON.stringify({ outcome: 'accepted', topic: 'a/b', n }))
  for (let n = 1; n <= 5; n++) trail.push(n === 4 ? 'a/c' : 'a/b', line(n))
  const all = await trail.read('a/#', undefined, 10)
  assert.deepEqual(all.messages.map((m) => m.n), [3, 4, 5])
  assert.equal(all.messages[0]?.outcome, undefined)
  assert.deepEqual((await trail.read('a/b', undefined, 10)).messages.map((m) => m.n), [3, 5])
  const head = await trail.head()
  assert.equal(all.next, head)
  const run = head.split('-')[0] ?? ''
  assert.deepEqual((await trail.read('a/#', `${run}-1`, 10)).messages.map((m) => m.n), [3, 4, 5], 'older than the ring')
  assert.deepEqual((await trail.read('a/#', 'zzzz-4', 10)).messages.map((m) => m.n), [3, 4, 5], 'an earlier run')
  assert.deepEqual(await trail.read('a/#', head, 10), { messages: [], next: head })
})

test('the memory trail is bounded by bytes too, and a page stops at 4 MiB with next where it stopped', async () => {
  // found by review: records carry their payload (up to 256 KiB), and 1,000 of them made a 256 MB ring and response
  const record = (n: number, bytes: number): Buffer => Buffer.from(JSON.stringify({ outcome: 'accepted', topic: 'a/b', n, pad: 'x'.repeat(bytes) }))
  const small = new MemoryAuditTrail(1000, 10 * 1024)
  for (let n = 1; n <= 10; n++) small.push('a/b', record(n, 3000))
  assert.deepEqual((await small.read('a/#', undefined, 100)).messages.map((m) => m.n), [8, 9, 10], 'the oldest went first: 3 records of ~3 KB fit 10 KiB')

  const large = new MemoryAuditTrail(1000, 64 * 1024 * 1024)
  for (let n = 1; n <= 40; n++) large.push('a/b', record(n, 200 * 1024))
  const newest = await large.read('a/#', undefined, 1000)
  assert.ok(newest.messages.length < 40 && newest.messages.length >= 20, `a page of ${newest.messages.length} records of 200 KB`)
  assert.equal(newest.messages.at(-1)?.n, 40)
  const run = newest.next.split('-')[0] ?? ''
  const first = await large.read('a/#', `${run}-0`, 1000)
  assert.ok(first.messages.length < 40)
  assert.equal(first.messages[0]?.n, 1)
  const rest = await large.read('a/#', first.next, 1000)
  assert.equal(rest.messages[0]?.n, first.messages.length + 1, 'the next page goes on where the first stopped')
})
