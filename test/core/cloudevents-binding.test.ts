import assert from 'node:assert/strict'
import { test } from 'node:test'
import { CloudEvent, HTTP, type Message } from 'cloudevents'
import { EnvelopeChecker } from '../../src/core/cloudevents/envelope.js'
import { fromHttp, type BoundEvent, type BoundRequest, type HttpHeaders } from '../../src/core/http/cloudevents-binding.js'

const checker = new EnvelopeChecker()
const source = '/albergue/booking-service'
const type = 'albergue.v1.booking.reserved'
const extensions = { correlationid: 'flow-42', traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' }

/** The SDK's message as our route would see it: header values strings, body bytes. */
function request (message: Message): [Record<string, string | string[] | undefined>, Buffer] {
  const headers: Record<string, string | string[] | undefined> = {}
  for (const [name, value] of Object.entries(message.headers)) headers[name] = typeof value === 'number' ? String(value) : value
  const { body } = message
  if (typeof body === 'string') return [headers, Buffer.from(body, 'utf8')]
  if (body instanceof Uint8Array) return [headers, Buffer.from(body)]
  if (body === undefined) return [headers, Buffer.alloc(0)]
  throw new TypeError(`unexpected SDK body ${typeof body}`)
}

function only (bound: BoundRequest): BoundEvent {
  assert.equal(bound.events.length, 1)
  const [event] = bound.events
  assert.ok(event !== undefined)
  return event
}

function accepted (bound: BoundEvent): Record<string, unknown> {
  assert.ok(bound.ok, `not read: ${JSON.stringify(bound)}`)
  const result = checker.checkValue(bound.event)
  assert.ok(result.ok, `envelope refused: ${JSON.stringify(result)}`)
  return bound.event
}

/** The SDK's own structured JSON for `event`: what both modes must come back as. */
function asJson (event: CloudEvent<unknown>): Record<string, unknown> {
  const json: unknown = JSON.parse(JSON.stringify(event))
  assert.ok(typeof json === 'object' && json !== null && !Array.isArray(json))
  return { ...json }
}

const samples: Array<[string, CloudEvent<unknown>]> = [
  ['JSON data', new CloudEvent<unknown>({ source, type, datacontenttype: 'application/json', data: { booking_id: 'b-1', nights: 2, tags: ['x'] }, ...extensions })],
  ['a +json type', new CloudEvent<unknown>({ source, type, datacontenttype: 'application/vnd.albergue+json', dataschema: 'https://schemas.example/booking.json', data: [1, 'two', null] })],
  ['text data', new CloudEvent<unknown>({ source, type, datacontenttype: 'text/plain', subject: 'bed-7', data: 'héllo, wörld €', ...extensions })],
  ['binary data', new CloudEvent<unknown>({ source, type, datacontenttype: 'application/octet-stream', data: new Uint8Array([0, 1, 0x7f, 0x80, 0xff]), ...extensions })],
  ['no data', new CloudEvent<unknown>({ source, type, correlationid: 'flow-43' })]
]

for (const [name, event] of samples) {
  test(`binary mode from the SDK, ${name}: same attributes and data, envelope accepts`, () => {
    const [headers, body] = request(HTTP.binary(event))
    const bound = fromHttp(headers, body)
    assert.equal(bound.mode, 'binary')
    const expected = asJson(event)
    // With no datacontenttype the SDK still sends Content-Type application/json, and the
    // binding maps Content-Type to datacontenttype (§3.1.1): that is what was sent.
    const sentType = headers['content-type']
    assert.deepEqual(accepted(only(bound)), event.datacontenttype === undefined ? { ...expected, datacontenttype: sentType } : expected)
  })

  test(`structured mode from the SDK, ${name}: same attributes and data, envelope accepts`, () => {
    const [headers, body] = request(HTTP.structured(event))
    const bound = fromHttp(headers, body)
    assert.equal(bound.mode, 'structured')
    assert.deepEqual(accepted(only(bound)), asJson(event))
  })
}

test('binary data survives byte for byte as data_base64', () => {
  const bytes = new Uint8Array([0xde, 0xad, 0xbe, 0xef, 0x00])
  const [headers, body] = request(HTTP.binary(new CloudEvent<unknown>({ source, type, datacontenttype: 'image/png', data: bytes })))
  const event = accepted(only(fromHttp(headers, body)))
  assert.equal(event.data, undefined)
  assert.deepEqual(Buffer.from(String(event.data_base64), 'base64'), Buffer.from(bytes))
})

test('a batch of three is read element by element; the invalid one fails alone', () => {
  const good = [
    new CloudEvent<unknown>({ source, type, id: 'b-1', datacontenttype: 'application/json', data: { n: 1 } }),
    new CloudEvent<unknown>({ source, type, id: 'b-3', datacontenttype: 'text/plain', data: 'three', ...extensions })
  ]
  const body = JSON.stringify([asJson(good[0] ?? assert.fail()), { source, type, specversion: '1.0' }, asJson(good[1] ?? assert.fail())])
  const bound = fromHttp({ 'content-type': 'application/cloudevents-batch+json; charset=UTF-8' }, Buffer.from(body))
  assert.equal(bound.mode, 'batch')
  assert.equal(bound.events.length, 3)
  const [first, second, third] = bound.events
  assert.deepEqual(accepted(first ?? assert.fail()), asJson(good[0] ?? assert.fail()))
  assert.deepEqual(accepted(third ?? assert.fail()), asJson(good[1] ?? assert.fail()))
  assert.ok(second?.ok === true)
  const result = checker.checkValue(second.event)
  assert.deepEqual(result.ok ? [] : result.errors, [{ path: '/id', message: 'is required' }])
})

test('batch edge cases: empty array, non-array, non-object element, broken JSON', () => {
  const batch = { 'content-type': 'application/cloudevents-batch+json' }
  assert.deepEqual(fromHttp(batch, Buffer.from('[]')), { mode: 'batch', events: [] })

  const notArray = only(fromHttp(batch, Buffer.from('{"id":"x"}')))
  assert.ok(!notArray.ok)
  assert.equal(notArray.reason, 'invalid_cloudevent')
  assert.match(notArray.errors[0]?.message ?? '', /must be a JSON array of events, got an object/)

  const [, element] = fromHttp(batch, Buffer.from(JSON.stringify([{ id: 'a' }, 42]))).events
  assert.ok(element !== undefined && !element.ok)
  assert.deepEqual(element.errors, [{ path: '', message: 'each event of a batch must be a JSON object, got a number 42' }])

  const broken = only(fromHttp(batch, Buffer.from('[{"id":')))
  assert.ok(!broken.ok)
  assert.equal(broken.reason, 'invalid_json')
})

test('binary mode passes a bad ce-time through unchanged, so the envelope check rejects /time', () => {
  const [headers, body] = request(HTTP.binary(new CloudEvent<unknown>({ source, type, datacontenttype: 'application/json', data: { n: 1 } })))
  headers['ce-time'] = '23/11/2026 10:00'
  const bound = only(fromHttp(headers, body))
  assert.ok(bound.ok)
  assert.equal(bound.event.time, '23/11/2026 10:00')
  const result = checker.checkValue(bound.event)
  assert.ok(!result.ok)
  assert.equal(result.reason, 'invalid_cloudevent')
  assert.deepEqual(result.errors.map((e) => e.path), ['/time'])
  // The SDK "repairs" it (an unparseable time becomes the current time): why ingress does not use HTTP.toEvent.
  const repaired = HTTP.toEvent({ headers, body: body.toString() })
  assert.ok(!Array.isArray(repaired))
  assert.notEqual(repaired.time, '23/11/2026 10:00')
})

test('nothing is invented: missing ce-id, ce-time and ce-specversion stay missing', () => {
  const headers = { 'content-type': 'application/json', 'ce-source': source, 'ce-type': type }
  const bound = fromHttp(headers, Buffer.from('{"n":1}'))
  assert.equal(bound.mode, 'binary')
  const event = only(bound)
  assert.ok(event.ok)
  assert.deepEqual(event.event, { source, type, datacontenttype: 'application/json', data: { n: 1 } })
  const result = checker.checkValue(event.event)
  assert.ok(!result.ok)
  assert.deepEqual(result.errors.map((e) => e.path).sort(), ['/id', '/specversion'])
})

test('binary mode with no ce- headers at all is still binary, and empty', () => {
  const bound = fromHttp({}, Buffer.alloc(0))
  assert.deepEqual(bound, { mode: 'binary', events: [{ ok: true, event: {} }] })
})

test('structured mode: a body that is not JSON is invalid_json; JSON that is not an object is invalid_cloudevent', () => {
  const structured = { 'content-type': 'Application/CloudEvents+JSON ; charset=utf-8' }
  const broken = only(fromHttp(structured, Buffer.from('specversion=1.0&id=1')))
  assert.equal(broken.ok, false)
  assert.equal(!broken.ok && broken.reason, 'invalid_json')
  assert.match(!broken.ok ? broken.errors[0]?.message ?? '' : '', /is not valid JSON/)

  const notUtf8 = only(fromHttp(structured, Buffer.from([0x7b, 0xc0, 0xa0, 0x7d])))
  assert.deepEqual(notUtf8, { ok: false, reason: 'invalid_json', errors: [{ path: '', message: 'is not valid UTF-8' }] })

  const array = only(fromHttp(structured, Buffer.from('[]')))
  assert.ok(!array.ok)
  assert.equal(array.reason, 'invalid_cloudevent')
  assert.match(array.errors[0]?.message ?? '', /must be one JSON object, got an array; send several events as application\/cloudevents-batch\+json/)

  const withBom = only(fromHttp(structured, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify({ id: 'x' }))])))
  assert.deepEqual(withBom, { ok: true, event: { id: 'x' } })
})

test('structured mode ignores ce- headers: the body alone is the event', () => {
  const bound = fromHttp({ 'content-type': 'application/cloudevents+json', 'ce-id': 'from-header' }, Buffer.from(JSON.stringify({ source, type })))
  assert.deepEqual(only(bound), { ok: true, event: { source, type } })
})

test('binary mode: JSON data that is not JSON is invalid_json at /data', () => {
  const bound = only(fromHttp({ 'content-type': 'application/json', 'ce-id': '1' }, Buffer.from('{nope')))
  assert.ok(!bound.ok)
  assert.equal(bound.reason, 'invalid_json')
  assert.equal(bound.errors[0]?.path, '/data')
})

test('percent-encoded and quoted header values are decoded (binding §3.1.3.2)', () => {
  const bound = only(fromHttp({
    'content-type': 'text/plain; charset=utf-8',
    'ce-specversion': '1.0',
    'ce-id': 'a%25b%22c%20d+e',
    'ce-source': source,
    'ce-type': type,
    'ce-subject': 'Euro%20%E2%82%AC%20%F0%9F%98%80',
    'ce-correlationid': '"quoted \\"old\\" style"%21',
    'ce-traceparent': 'unnecessarily%2dencoded%2Dis%2fok'
  }, Buffer.from('hi')))
  const event = accepted(bound)
  assert.equal(event.id, 'a%b"c d+e')
  assert.equal(event.subject, 'Euro € 😀')
  assert.equal(event.correlationid, 'quoted "old" style!')
  assert.equal(event.traceparent, 'unnecessarily-encoded-is/ok')
  assert.equal(event.datacontenttype, 'text/plain; charset=utf-8')
  assert.equal(event.data, 'hi')
})

test('header values that do not decode are refused with the attribute named', () => {
  const cases: Array<[string, RegExp]> = [
    ['%C0%A0', /not valid percent-encoded UTF-8.*got "%C0%A0"/], // overlong encoding of U+0020
    ['%E2%82', /not valid percent-encoded UTF-8/], // truncated sequence
    ['100%', /not valid percent-encoded UTF-8/],
    ['%zz', /not valid percent-encoded UTF-8/],
    ['"open', /unterminated quoted string/],
    ['caf\u00e9', /outside printable ASCII/]
  ]
  for (const [value, message] of cases) {
    const bound = only(fromHttp({ 'ce-specversion': '1.0', 'ce-subject': value }, Buffer.alloc(0)))
    assert.ok(!bound.ok, value)
    assert.equal(bound.reason, 'invalid_cloudevent')
    assert.equal(bound.errors.length, 1)
    assert.equal(bound.errors[0]?.path, '/subject')
    assert.match(bound.errors[0]?.message ?? '', message)
  }
})

test('binary-mode attributes that belong elsewhere, or come twice, are refused', () => {
  const bound = only(fromHttp({
    'content-type': 'application/json',
    'ce-datacontenttype': 'text/plain',
    'ce-data': '{}',
    'ce-id': ['1', '2']
  }, Buffer.from('{}')))
  assert.ok(!bound.ok)
  assert.deepEqual(bound.errors.map((e) => e.path).sort(), ['/data', '/datacontenttype', '/id'])
})

test('data by content type: +json parsed, text/* as UTF-8 string, other charsets and no type as base64, empty body no data', () => {
  const data = (headers: HttpHeaders, body: Buffer): Record<string, unknown> => {
    const bound = only(fromHttp(headers, body))
    assert.ok(bound.ok)
    return bound.event
  }
  assert.deepEqual(data({ 'content-type': 'application/problem+json' }, Buffer.from('{"a":1}')).data, { a: 1 })
  assert.equal(data({ 'content-type': 'text/csv' }, Buffer.from('a,b\n1,2')).data, 'a,b\n1,2')
  const latin1 = data({ 'content-type': 'text/plain; charset=ISO-8859-1' }, Buffer.from([0x63, 0x61, 0x66, 0xe9]))
  assert.deepEqual(latin1, { datacontenttype: 'text/plain; charset=ISO-8859-1', data_base64: 'Y2Fm6Q==' })
  const badUtf8Text = data({ 'content-type': 'text/plain' }, Buffer.from([0xff]))
  assert.equal(badUtf8Text.data_base64, '/w==')
  assert.deepEqual(data({}, Buffer.from('raw')), { data_base64: 'cmF3' })
  assert.deepEqual(data({ 'content-type': 'application/json' }, Buffer.alloc(0)), { datacontenttype: 'application/json' })
  // Header names are case-insensitive; a ce-__proto__ header is a plain (invalid) attribute, not a prototype.
  const odd = data({ 'CE-Id': 'x', 'ce-__proto__': 'y' }, Buffer.alloc(0))
  assert.equal(Object.getPrototypeOf(odd), Object.prototype)
  assert.deepEqual(Object.keys(odd).sort(), ['__proto__', 'id'])
})
