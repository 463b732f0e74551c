import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { MqttClient } from 'mqtt'
import { EnvelopeChecker, MAX_JSON_DEPTH } from '../../src/index.js'
import { connect, httpUrl, mqttUrl, nextMessage, sample, startBroker } from '../helpers/broker.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved, parseRecord, type RecordData } from '../helpers/events.js'

/** Deep enough to overflow the stack of anything that recurses over it (JSON.stringify gives up near 5,000). */
const DEPTH = 30_000
const ARRAYS = '['.repeat(DEPTH) + ']'.repeat(DEPTH)
const OBJECTS = '{"a":'.repeat(DEPTH) + '1' + '}'.repeat(DEPTH)

/** `event` serialized with `deep` (JSON text) as the value of its member `name`. */
function withDeep (event: Record<string, unknown>, name: string, deep: string): string {
  return JSON.stringify({ ...event, [name]: '@deep@' }).replace('"@deep@"', deep)
}

/** Payloads refused for their depth: a top-level array, nested objects, a valid event's `data`, an extension value. */
const DEEP_PAYLOADS: ReadonlyArray<readonly [string, string]> = [
  ['a top-level array', ARRAYS],
  ['nested objects', OBJECTS],
  ['the data of a valid event', withDeep(bookingReserved(), 'data', ARRAYS)],
  ['an extension value', withDeep(bookingReserved(), 'trail', ARRAYS)]
]

interface ErrorReply { error: { code: string, message: string, details?: Array<{ path?: string, message?: string, index?: number, reason?: string }> } }

/** QoS 1 publish that resolves on the PUBACK and rejects if the broker drops the connection instead. */
async function publishAcked (client: MqttClient, topic: string, payload: string): Promise<void> {
  let onClose = (): void => {}
  const dropped = new Promise<never>((_resolve, reject) => {
    onClose = () => { reject(new Error('the broker disconnected the publisher')) }
    client.once('close', onClose)
  })
  try {
    await Promise.race([client.publishAsync(topic, payload, { qos: 1 }), dropped])
  } finally {
    client.off('close', onClose)
  }
}

async function deadLetters (url: string): Promise<RecordData[]> {
  const listed = await fetch(url)
  assert.equal(listed.status, 200)
  const { items } = await listed.json() as { items: Array<{ record: { data: RecordData } }> }
  return items.map((item) => item.record.data)
}

function assertKeptAsBytes (data: RecordData, payload: string, what: string): void {
  assert.equal(data.reason, 'invalid_json', what)
  assert.equal(data.payload, undefined, `${what}: not kept as JSON`)
  assert.equal(Buffer.from(data.payloadBase64 ?? '', 'base64').toString(), payload, `${what}: the original bytes, as base64`)
}

test(`the envelope check refuses JSON nested deeper than MAX_JSON_DEPTH (${MAX_JSON_DEPTH}) as invalid_json, and no less deep`, () => {
  const checker = new EnvelopeChecker()
  const nested = (depth: number): string => '['.repeat(depth) + ']'.repeat(depth)
  const atLimit = checker.check(nested(MAX_JSON_DEPTH))
  assert.equal(atLimit.ok, false)
  assert.equal(!atLimit.ok && atLimit.reason, 'invalid_cloudevent', 'as deep as allowed: read, then refused for not being an object')
  const over = checker.check(nested(MAX_JSON_DEPTH + 1))
  assert.deepEqual(over, { ok: false, reason: 'invalid_json', errors: [{ path: '', message: `JSON nested deeper than ${MAX_JSON_DEPTH} levels` }] })
})

for (const workers of [0, 1]) {
  test(`validation.workers ${workers}: JSON nested ${DEPTH} deep on a validated topic is acked, dead-lettered as invalid_json with its bytes, told on $rejections and counted`, async (t) => {
    const broker = await startBroker(t, { validation: { workers } })
    const watcher = await connect(t, mqttUrl(broker))
    await watcher.subscribeAsync('$DLQ/#', { qos: 1 })
    const publisher = await connect(t, mqttUrl(broker), { clientId: 'deep-publisher' })
    await publisher.subscribeAsync('$rejections/deep-publisher', { qos: 1 })

    for (const [what, payload] of DEEP_PAYLOADS) {
      const [, dead, told] = await Promise.all([
        publishAcked(publisher, BOOKING_RESERVED_TOPIC, payload),
        nextMessage(watcher, `$DLQ/${BOOKING_RESERVED_TOPIC}`),
        nextMessage(publisher, '$rejections/deep-publisher')
      ])
      assertKeptAsBytes(parseRecord(dead.payload).data, payload, `${what} on $DLQ`)
      assertKeptAsBytes(parseRecord(told.payload).data, payload, `${what} on $rejections`)
      assert.match(parseRecord(told.payload).data.errors[0]?.message ?? '', /nested deeper than/)
      assert.equal(publisher.connected, true, `${what}: the publisher stays connected`)
    }

    const stored = await deadLetters(httpUrl(broker, '/api/dlq'))
    assert.equal(stored.length, DEEP_PAYLOADS.length)
    for (const [what, payload] of DEEP_PAYLOADS) {
      const kept = stored.find((data) => Buffer.from(data.payloadBase64 ?? '', 'base64').toString() === payload)
      assert.ok(kept !== undefined, `${what} is in GET /api/dlq`)
      assertKeptAsBytes(kept, payload, `${what} in GET /api/dlq`)
    }
    const metrics = await broker.metrics.metrics()
    assert.equal(sample(metrics, 'ce_broker_events_total', { outcome: 'rejected', reason: 'invalid_json' }), DEEP_PAYLOADS.length)
  })
}

test(`HTTP: JSON nested ${DEPTH} deep answers 400 invalid_json on every publish route, and is dead-lettered with its bytes`, async (t) => {
  const broker = await startBroker(t)
  const structured = { 'content-type': 'application/cloudevents+json' }
  const batch = { 'content-type': 'application/cloudevents-batch+json' }
  const binary = { 'content-type': 'application/json', 'ce-specversion': '1.0', 'ce-id': 'deep-1', 'ce-source': '/albergue/booking-service', 'ce-type': 'albergue.v1.booking.reserved' }
  const json = { 'content-type': 'application/json' }
  const cases: ReadonlyArray<readonly [string, string, Record<string, string>, string]> = [
    ...DEEP_PAYLOADS.map(([what, body]) => [`structured, ${what}`, '/api/events', structured, body] as const),
    ['batch, the data of a valid event', '/api/events', batch, `[${withDeep(bookingReserved(), 'data', ARRAYS)}]`],
    ['batch, nested arrays', '/api/events', batch, ARRAYS],
    ['binary, the body as data', '/api/events', binary, ARRAYS],
    ['publish, payload as JSON', '/api/mqtt/publish', json, withDeep({ topic: BOOKING_RESERVED_TOPIC }, 'payload', ARRAYS)],
    ['publish, payload as a string', '/api/mqtt/publish', json, JSON.stringify({ topic: BOOKING_RESERVED_TOPIC, payload: withDeep(bookingReserved(), 'data', OBJECTS) })]
  ]
  for (const [what, path, headers, body] of cases) {
    const res = await fetch(httpUrl(broker, path), { method: 'POST', headers, body })
    const reply = await res.json() as ErrorReply
    assert.equal(res.status, 400, `${what}: ${JSON.stringify(reply).slice(0, 200)}`)
    assert.equal(reply.error.code, 'invalid_json', what)
    assert.ok(reply.error.details?.some((d) => /nested deeper than/.test(d.message ?? '') || d.reason === 'invalid_json'), what)
  }

  const stored = await deadLetters(httpUrl(broker, '/api/dlq'))
  assert.equal(stored.length, cases.length, 'each refused request is kept')
  for (const data of stored) {
    assert.equal(data.reason, 'invalid_json')
    assert.equal(data.payload, undefined)
    assert.ok((data.payloadBase64 ?? '').length > 0, 'kept as base64')
  }
  const metrics = await broker.metrics.metrics()
  assert.equal(sample(metrics, 'ce_broker_events_total', { outcome: 'rejected', reason: 'invalid_json' }), cases.length)
})
