import assert from 'node:assert/strict'
import { test } from 'node:test'
import { HTTP } from 'cloudevents'
import { Webhook } from 'standardwebhooks'
import type { Broker } from '../../src/index.js'
import { fromHttp } from '../../src/core/http/cloudevents-binding.js'
import { binaryMessage, encodeHeaderValue } from '../../plugins/webhooks/request.js'
import { collectMessages, connect, httpUrl, mqttUrl, nextMessage, startBroker } from '../helpers/broker.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved, parseRecord, type RecordData } from '../helpers/events.js'
import { receiver, type WebhookRequest } from '../helpers/receiver.js'

const SECRET = 'a-shared-secret-of-the-booking-team'
const FAST_RETRY = { maxAttempts: 3, initialDelayMs: 5, maxDelayMs: 20 }
/** No validation rule matches it: anything published here is accepted as it is (`validation.default` is `pass`). */
const UNVALIDATED_TOPIC = 'plain/a'

/** 4 KiB of UTF-8: ASCII with a tab, a quote, a percent sign and an emoji in it. */
const FOUR_KIB = (() => {
  const head = 'start\t"100%" 🥾 '
  return head + 'x'.repeat(4096 - Buffer.byteLength(head))
})()

/** Attribute values that binary mode used to lose, garble or have refused; each goes in `subject` and in an extension. */
const CASES: ReadonlyArray<readonly [string, string]> = [
  ['the issue\'s example', 'Peregrino José 100% ✓'],
  ['percent signs, one that looks encoded', '100% done, %41 is not A, 50%%'],
  ['double quotes and a backslash', 'say "hola" \\"twice\\"'],
  ['Latin-1', 'José Ñandú Müller ç'],
  ['CJK', '巡礼者の宿 東京 서울'],
  ['emoji', 'camino 🥾🏔️ done 😀'],
  ['a tab and padding', ' a\tb '],
  ['printable ASCII that needs no encoding', 'https://example.test/a?b=c&d=e#f!$\'()*+,;=:@[]~'],
  ['a 4 KiB value', FOUR_KIB]
]

async function register (broker: Broker, body: object): Promise<string> {
  const res = await fetch(httpUrl(broker, '/api/webhooks'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  assert.equal(res.status, 201)
  return String(((await res.json()) as { id: unknown }).id)
}

/**
 * The binding's decoding (§3.1.3.2) of a header value, written out for the test: one round of
 * percent-decoding over UTF-8 bytes (decodeURIComponent is exactly that, and refuses bad
 * UTF-8). The cloudevents SDK 10.0.0 does not decode: `HTTP.toEvent` hands `ce-*` values
 * back as they came (its header parser is a pass-through), though the spec says a receiver
 * MUST decode; so binary-mode values are compared after this.
 */
function specDecode (value: unknown): string {
  assert.equal(typeof value, 'string')
  return decodeURIComponent(String(value))
}

function byId (requests: readonly WebhookRequest[], id: string): WebhookRequest {
  const found = requests.find((r) => r.headers['ce-id'] === id || (r.headers['content-type']?.startsWith('application/cloudevents+json') === true && (JSON.parse(r.body) as { id: string }).id === id))
  assert.ok(found !== undefined, `no request for ${id}`)
  return found
}

test('encodeHeaderValue percent-encodes as §3.1.3.2 says: the spec example, space, quote, percent, controls; lone surrogates are refused', () => {
  assert.equal(encodeHeaderValue('Euro € 😀'), 'Euro%20%E2%82%AC%20%F0%9F%98%80', 'the spec\'s own example')
  assert.equal(encodeHeaderValue('Peregrino José 100% ✓'), 'Peregrino%20Jos%C3%A9%20100%25%20%E2%9C%93')
  assert.equal(encodeHeaderValue('"a"\t%\u007f\u0000'), '%22a%22%09%25%7F%00')
  assert.equal(encodeHeaderValue('/albergue/booking-service'), '/albergue/booking-service', 'printable ASCII other than " and % stays')
  assert.throws(() => encodeHeaderValue('bad \ud800 half'), /lone UTF-16 surrogate/)
  for (const [, value] of CASES) {
    const encoded = encodeHeaderValue(value)
    assert.match(encoded, /^[\x21-\x7e]*$/, 'visible US-ASCII only: nothing for undici to refuse or send as Latin-1')
    assert.doesNotMatch(encoded, /"/)
    assert.equal(decodeURIComponent(encoded), value)
  }
})

test('attributes with %, quotes, Latin-1, CJK, emoji, a tab and a 4 KiB value arrive intact in binary and in structured mode; the SDK reads both; a subscription on the same host is unaffected', async (t) => {
  const broker = await startBroker(t)
  const hook = await receiver(t)
  // two subscriptions to one origin (the same receiver, two paths): before the fix they shared its connections
  await register(broker, { service_id: 'binary', webhook_url: `${hook.url}/binary`, topic_filters: ['albergue/#'], secret: SECRET, retry: FAST_RETRY })
  await register(broker, { service_id: 'structured', webhook_url: `${hook.url}/structured`, topic_filters: ['albergue/#'], secret: SECRET, mode: 'structured', retry: FAST_RETRY })
  const publisher = await connect(t, mqttUrl(broker))
  const events = CASES.map(([, value]) => bookingReserved({}, { subject: value, note: value }))
  // several of each, as a busy publisher would send them: more than the 8 connections a subscription may hold
  const all = [...events, ...Array.from({ length: 3 }, () => CASES.map(([, value]) => bookingReserved({}, { subject: value, note: value }))).flat()]
  for (const event of all) await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })

  const requests = await hook.next(all.length * 2, 15_000)
  const verifier = new Webhook(SECRET, { format: 'raw' })
  for (const [i, [name, value]] of CASES.entries()) {
    const event = events[i]
    assert.ok(event !== undefined)
    const id = String(event.id)
    const binary = byId(requests.filter((r) => r.headers['ce-id'] !== undefined), id)
    const structured = byId(requests.filter((r) => r.headers['ce-id'] === undefined), id)
    for (const request of [binary, structured]) assert.doesNotThrow(() => verifier.verify(request.body, request.headers), `${name}: signature`)

    assert.equal(binary.headers['ce-subject'], encodeHeaderValue(value), `${name}: ce-subject percent-encoded`)
    const fromBinary = HTTP.toEvent({ headers: binary.headers, body: binary.body })
    assert.ok(!Array.isArray(fromBinary))
    assert.equal(specDecode(fromBinary.subject), value, `${name}: binary subject, spec-decoded (the SDK does not decode)`)
    assert.equal(specDecode(fromBinary.note), value, `${name}: binary extension, spec-decoded`)
    assert.deepEqual(fromBinary.data, event.data)

    const fromStructured = HTTP.toEvent({ headers: structured.headers, body: structured.body })
    assert.ok(!Array.isArray(fromStructured))
    assert.equal(fromStructured.subject, value, `${name}: structured subject, as the SDK parses it`)
    assert.equal(fromStructured.note, value, `${name}: structured extension`)

    // and POST /api/events reads such a request back to the event as published
    const bound = fromHttp(binary.headers, Buffer.from(binary.body))
    assert.equal(bound.events.length, 1)
    const [back] = bound.events
    assert.ok(back?.ok === true, `${name}: ${JSON.stringify(back)}`)
    assert.deepEqual(back.event, event, `${name}: our binding decodes what we encode`)
  }
  assert.ok(Buffer.byteLength(binary4k(requests, events)) > 4096)
  const { items } = await (await fetch(httpUrl(broker, '/api/dlq'))).json() as { items: unknown[] }
  assert.deepEqual(items, [], 'nothing dead-lettered')
})

/** The ce-note header of the 4 KiB case, as sent. */
function binary4k (requests: readonly WebhookRequest[], events: ReadonlyArray<Record<string, unknown>>): string {
  const event = events[CASES.length - 1]
  assert.ok(event !== undefined)
  return byId(requests.filter((r) => r.headers['ce-id'] !== undefined), String(event.id)).headers['ce-note'] ?? ''
}

test('an event with a schemaurl extension is delivered in binary and structured mode (the SDK refuses to build it)', async (t) => {
  const broker = await startBroker(t)
  const hook = await receiver(t)
  await register(broker, { service_id: 'binary', webhook_url: `${hook.url}/binary`, topic_filters: ['plain/#'], retry: FAST_RETRY })
  await register(broker, { service_id: 'structured', webhook_url: `${hook.url}/structured`, topic_filters: ['plain/#'], mode: 'structured', retry: FAST_RETRY })
  const publisher = await connect(t, mqttUrl(broker))
  const event = bookingReserved({}, { schemaurl: 'https://example.test/schema?v=1 "x"' })
  await publisher.publishAsync(UNVALIDATED_TOPIC, JSON.stringify(event), { qos: 1 })
  const requests = await hook.next(2)
  const binary = byId(requests.filter((r) => r.headers['ce-id'] !== undefined), String(event.id))
  // HTTP.toEvent would throw "cannot set schemaurl on version 1.0 event": read the header as the spec says
  assert.equal(specDecode(binary.headers['ce-schemaurl']), event.schemaurl)
  const [back] = fromHttp(binary.headers, Buffer.from(binary.body)).events
  assert.deepEqual(back, { ok: true, event })
  const structured = byId(requests.filter((r) => r.headers['ce-id'] === undefined), String(event.id))
  assert.deepEqual(JSON.parse(structured.body), event)
})

test('beyond the receiver\'s header limit (node: 16 KiB) the endpoint answers 431: dead-lettered at once as delivery_failed; structured mode delivers the same event; an event binary mode cannot carry fails at once naming the attribute', async (t) => {
  const broker = await startBroker(t)
  const watcher = await connect(t, mqttUrl(broker))
  await watcher.subscribeAsync('$DLQ/#', { qos: 1 })
  const binaryHook = await receiver(t)
  const structuredHook = await receiver(t)
  const binaryId = await register(broker, { service_id: 'binary', webhook_url: binaryHook.url, topic_filters: ['plain/#'], retry: FAST_RETRY })
  await register(broker, { service_id: 'structured', webhook_url: structuredHook.url, topic_filters: ['plain/#'], mode: 'structured', retry: FAST_RETRY })
  const dead = collectMessages(watcher, 2, 10_000)
  const publisher = await connect(t, mqttUrl(broker))
  // 6 000 CJK characters: 18 000 bytes of UTF-8, 54 000 once percent-encoded
  const huge = bookingReserved({}, { note: '東'.repeat(6000) })
  // an object is no CloudEvents attribute value; on a topic no rule checks it is accepted, and structured mode carries it
  const nested = bookingReserved({}, { extra: { a: 1 } })
  await publisher.publishAsync(UNVALIDATED_TOPIC, JSON.stringify(huge), { qos: 1 })
  await publisher.publishAsync(UNVALIDATED_TOPIC, JSON.stringify(nested), { qos: 1 })
  const records: RecordData[] = (await dead).map((m) => parseRecord(m.payload).data)
  const tooLarge = records.find((r) => (r.payload as { id?: string } | undefined)?.id === huge.id)
  assert.deepEqual([tooLarge?.reason, tooLarge?.subscription, tooLarge?.attempts, tooLarge?.lastStatus], ['delivery_failed', binaryId, 1, 431])
  const unbuildable = records.find((r) => (r.payload as { id?: string } | undefined)?.id === nested.id)
  assert.deepEqual([unbuildable?.reason, unbuildable?.attempts], ['delivery_failed', 1])
  assert.match(unbuildable?.errors[0]?.message ?? '', /could not be built: TypeError: attribute "extra" is an object: binary mode carries string, number and boolean attributes only; use structured mode/)
  const delivered = await structuredHook.next(2)
  assert.deepEqual(delivered.map((r) => (JSON.parse(r.body) as { id: string }).id).sort(), [huge.id, nested.id].sort())
  assert.equal(binaryHook.requests.length, 0, 'the 431 came before node read the request: the receiver\'s handler never saw it')
})

test('an event sent to POST /api/events with percent-encoded ce-* headers is published with the decoded attributes', async (t) => {
  const broker = await startBroker(t)
  const subscriber = await connect(t, mqttUrl(broker))
  await subscriber.subscribeAsync(BOOKING_RESERVED_TOPIC, { qos: 1 })
  for (const [name, value] of CASES) {
    const event = bookingReserved({}, { subject: value, note: value })
    const { headers, body } = binaryMessage(event)
    const next = nextMessage(subscriber, BOOKING_RESERVED_TOPIC)
    const res = await fetch(httpUrl(broker, '/api/events'), { method: 'POST', headers, body })
    assert.equal(res.status, 202, `${name}: ${await res.text()}`)
    assert.deepEqual(JSON.parse((await next).payload.toString('utf8')), event, name)
  }
})
