import assert from 'node:assert/strict'
import { test } from 'node:test'
import { CloudEvent, HTTP } from 'cloudevents'
import { connect, httpUrl, mqttUrl, nextMessage, sample, startBroker } from '../helpers/broker.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved, parseRecord } from '../helpers/events.js'

interface ErrorReply { error: { code: string, message: string, details?: Array<{ path?: string, message?: string, index?: number, reason?: string }> } }

function sdkEvent (data: Record<string, unknown> = {}, extra: Record<string, string> = {}): CloudEvent<Record<string, unknown>> {
  const base = bookingReserved(data)
  return new CloudEvent({ id: String(base.id), source: String(base.source), type: String(base.type), time: String(base.time), datacontenttype: 'application/json', data: base.data as Record<string, unknown>, ...extra })
}

async function post (url: string, headers: Record<string, string>, body: string | Buffer): Promise<{ status: number, json: unknown }> {
  const res = await fetch(url, { method: 'POST', headers, body })
  const text = await res.text()
  return { status: res.status, json: text === '' ? undefined : JSON.parse(text) }
}

function headersOf (message: { headers: Record<string, unknown> }): Record<string, string> {
  return Object.fromEntries(Object.entries(message.headers).map(([k, v]) => [k, String(v)]))
}

test('POST /api/events takes binary and structured mode from the official SDK; subscribers get the structured event', async (t) => {
  const broker = await startBroker(t)
  const subscriber = await connect(t, mqttUrl(broker))
  await subscriber.subscribeAsync('albergue/#', { qos: 1 })

  for (const mode of ['binary', 'structured'] as const) {
    const event = sdkEvent({}, { correlationid: 'flow-7' })
    const message = mode === 'binary' ? HTTP.binary(event) : HTTP.structured(event)
    const delivered = nextMessage(subscriber, BOOKING_RESERVED_TOPIC)
    const reply = await post(httpUrl(broker, '/api/events'), headersOf(message), String(message.body))
    assert.equal(reply.status, 202, JSON.stringify(reply.json))
    assert.deepEqual(reply.json, { accepted: true, topic: BOOKING_RESERVED_TOPIC, id: event.id })
    const received = JSON.parse((await delivered).payload.toString()) as Record<string, unknown>
    assert.equal(received.id, event.id)
    assert.equal(received.correlationid, 'flow-7')
    assert.deepEqual(received.data, event.data)
  }
})

test('every reason code over HTTP, with its status, and the rejected event dead-lettered', async (t) => {
  const broker = await startBroker(t, { limits: { maxPayloadBytes: 2048 } })
  const watcher = await connect(t, mqttUrl(broker))
  await watcher.subscribeAsync('$DLQ/#', { qos: 1 })
  const structured = { 'content-type': 'application/cloudevents+json' }
  const cases: Array<[Record<string, string>, string, number, string]> = [
    [structured, '{"specversion":', 400, 'invalid_json'],
    [structured, JSON.stringify(bookingReserved({}, { id: '' })), 400, 'invalid_cloudevent'],
    [{ 'content-type': 'application/json', 'ce-specversion': '1.0', 'ce-id': 'x-1', 'ce-source': '/s', 'ce-type': 'albergue.v1.booking.reserved', 'ce-time': 'now' }, '{}', 400, 'invalid_cloudevent'],
    [structured, JSON.stringify(bookingReserved({}, { type: 'albergue.v9.nothing' })), 422, 'unknown_type'],
    [structured, JSON.stringify(bookingReserved({ nights: 0 })), 422, 'schema_validation_failed'],
    [structured, JSON.stringify(bookingReserved({ notes: 'x'.repeat(3000) })), 413, 'payload_too_large']
  ]
  for (const [headers, body, status, code] of cases) {
    const dead = code === 'payload_too_large' ? undefined : nextMessage(watcher)
    const reply = await post(httpUrl(broker, '/api/events'), headers, body)
    assert.equal(reply.status, status, `${code}: ${JSON.stringify(reply.json)}`)
    const error = (reply.json as ErrorReply).error
    assert.equal(error.code, code)
    assert.ok(Array.isArray(error.details) && error.details.length > 0)
    if (dead !== undefined) assert.equal(parseRecord((await dead).payload).data.reason, code)
  }
  // the mismatch of type and topic can only happen on the publish route, where the topic is given
  const mismatch = await post(httpUrl(broker, '/api/mqtt/publish'), { 'content-type': 'application/json' }, JSON.stringify({ topic: 'albergue/v1/booking/confirmed', payload: bookingReserved() }))
  assert.equal(mismatch.status, 400)
  assert.equal((mismatch.json as ErrorReply).error.code, 'type_topic_mismatch')

  const metrics = await broker.metrics.metrics()
  assert.equal(sample(metrics, 'ce_broker_events_total', { outcome: 'rejected', reason: 'payload_too_large' }), 1)
  assert.equal(sample(metrics, 'ce_broker_events_total', { outcome: 'rejected', reason: 'schema_validation_failed' }), 1)
  const stored = await (await fetch(httpUrl(broker, '/api/dlq?reason=payload_too_large'))).json() as { items: unknown[] }
  assert.deepEqual(stored.items, [], 'payload_too_large is counted, not dead-lettered')
})

test('a batch publishes the valid events and reports the rejected ones by index', async (t) => {
  const broker = await startBroker(t)
  const subscriber = await connect(t, mqttUrl(broker))
  await subscriber.subscribeAsync('albergue/#', { qos: 1 })
  const good = [bookingReserved(), bookingReserved()]
  const headers = { 'content-type': 'application/cloudevents-batch+json' }

  const first = nextMessage(subscriber)
  const ok = await post(httpUrl(broker, '/api/events'), headers, JSON.stringify(good))
  assert.equal(ok.status, 202)
  assert.deepEqual(ok.json, { accepted: 2, events: good.map((e) => ({ topic: BOOKING_RESERVED_TOPIC, id: e.id })) })
  assert.equal(JSON.parse((await first).payload.toString()).id, good[0]?.id)

  const mixed = await post(httpUrl(broker, '/api/events'), headers, JSON.stringify([bookingReserved(), bookingReserved({ nights: 0 }), 'not an event']))
  assert.equal(mixed.status, 422)
  const error = (mixed.json as ErrorReply).error
  assert.equal(error.code, 'schema_validation_failed')
  assert.match(error.message, /^2 of 3 events rejected/)
  assert.deepEqual(error.details?.map((d) => [d.index, d.reason]), [[1, 'schema_validation_failed'], [2, 'invalid_cloudevent']])
})

test('POST /api/mqtt/publish takes { topic, payload, qos, retain } with payload as string or object', async (t) => {
  const broker = await startBroker(t)
  const subscriber = await connect(t, mqttUrl(broker))
  await subscriber.subscribeAsync(['albergue/#', 'plain/#'], { qos: 1 })
  const json = { 'content-type': 'application/json' }

  const event = bookingReserved()
  const asObject = nextMessage(subscriber)
  const reply = await post(httpUrl(broker, '/api/mqtt/publish'), json, JSON.stringify({ topic: BOOKING_RESERVED_TOPIC, payload: event, qos: 1, retain: true }))
  assert.equal(reply.status, 202)
  assert.deepEqual(reply.json, { accepted: true, topic: BOOKING_RESERVED_TOPIC })
  assert.deepEqual(JSON.parse((await asObject).payload.toString()), event)
  const retained = await (await fetch(httpUrl(broker, `/api/mqtt/retained/${encodeURIComponent(BOOKING_RESERVED_TOPIC)}`))).json() as { messages: Array<{ payload: unknown }> }
  assert.deepEqual(retained.messages.map((m) => m.payload), [event])

  const asString = nextMessage(subscriber, 'plain/text')
  assert.equal((await post(httpUrl(broker, '/api/mqtt/publish'), json, JSON.stringify({ topic: 'plain/text', payload: 'hola' }))).status, 202)
  assert.equal((await asString).payload.toString(), 'hola')

  const invalid = await post(httpUrl(broker, '/api/mqtt/publish'), json, JSON.stringify({ topic: BOOKING_RESERVED_TOPIC, payload: '{' }))
  assert.equal(invalid.status, 400)
  assert.equal((invalid.json as ErrorReply).error.code, 'invalid_json')

  for (const [body, pattern] of [
    ['{', /body is not JSON/],
    [JSON.stringify({ payload: 'x' }), /topic/],
    [JSON.stringify({ topic: 'a/#', payload: 'x' }), /must not contain wildcards|"#"/],
    [JSON.stringify({ topic: 'a', payload: 'x', qos: 3 }), /qos/]
  ] as const) {
    const bad = await post(httpUrl(broker, '/api/mqtt/publish'), json, body)
    assert.equal(bad.status, 400, body)
    assert.equal((bad.json as ErrorReply).error.code, 'bad_request')
    assert.match((bad.json as ErrorReply).error.message, pattern)
  }
  const reserved = await post(httpUrl(broker, '/api/mqtt/publish'), json, JSON.stringify({ topic: '$DLQ/forged', payload: 'x' }))
  assert.equal(reserved.status, 403)
  assert.equal((reserved.json as ErrorReply).error.code, 'reserved_topic')
})

test('a body over the route limit is refused by the HTTP parser as payload_too_large and counted', async (t) => {
  const broker = await startBroker(t)
  const reply = await post(httpUrl(broker, '/api/events'), { 'content-type': 'application/cloudevents+json' }, Buffer.alloc(2 * 1024 * 1024, 0x20))
  assert.equal(reply.status, 413)
  assert.equal((reply.json as ErrorReply).error.code, 'payload_too_large')
  assert.equal(sample(await broker.metrics.metrics(), 'ce_broker_events_total', { outcome: 'rejected', reason: 'payload_too_large' }), 1)
})
