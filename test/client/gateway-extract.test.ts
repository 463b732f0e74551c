/**
 * The gateway interceptor's reading of a response, without a network: what `extractEvents`
 * takes out of headers and bodies, how `toEvent` tells a complete CloudEvent from a
 * partial one, and the types an application sees of the plugin and the middleware.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { expectTypeOf } from 'expect-type'
import express, { type RequestHandler } from 'express'
import Fastify, { type FastifyInstance } from 'fastify'
import fc from 'fast-check'
import { extractEvents, gatewayInterceptor, gatewayMiddleware, toEvent, type CloudEventJson, type GatewayStats, type Publisher } from '../../client/index.js'
import { bookingReserved } from '../helpers/events.js'

const CANCELLED = { type: 'albergue.v1.booking.cancelled', data: { booking_id: 'b-1' } }

test('the header (any case, one or several values) and the body\'s events beside data come out; the rest stays', () => {
  const body = JSON.stringify({ data: { a: 1 }, events: [CANCELLED], meta: 'kept' })
  const out = extractEvents({ 'X-CloudEvents': [JSON.stringify([{ type: 'h1' }]), JSON.stringify([{ type: 'h2' }])], 'content-type': 'application/json; charset=utf-8', 'Content-Length': String(body.length), 'x-other': 'kept' }, body)
  assert.deepEqual(out.entries, [{ type: 'h1' }, { type: 'h2' }, CANCELLED])
  assert.equal(out.body, '{"data":{"a":1},"meta":"kept"}')
  assert.deepEqual(out.headers, { 'content-type': 'application/json; charset=utf-8', 'Content-Length': '30', 'x-other': 'kept' })
  assert.deepEqual(out.problems, [])

  const asBuffer = extractEvents({ 'content-type': 'application/problem+json' }, Buffer.from(body))
  assert.deepEqual([asBuffer.entries, asBuffer.body], [[CANCELLED], '{"data":{"a":1},"meta":"kept"}'])
  const parsed = extractEvents({}, { data: null, events: [CANCELLED] })
  assert.deepEqual([parsed.entries, parsed.body], [[CANCELLED], { data: null }])
})

test('what is not this convention is left as it is', () => {
  const listing = JSON.stringify({ events: [CANCELLED] })
  const cases: Array<[Record<string, string>, unknown]> = [
    [{ 'content-type': 'text/plain' }, JSON.stringify({ data: 1, events: [CANCELLED] })],
    [{ 'content-type': 'application/json' }, listing],
    [{ 'content-type': 'application/json' }, '{"data": 1, "events": [broken'],
    [{}, { data: 1, events: 'no array' }],
    [{}, [{ data: 1, events: [] }]],
    [{}, new Map([['data', 1]])]
  ]
  for (const [headers, body] of cases) {
    const out = extractEvents(headers, body)
    assert.equal(out.body, body)
    assert.deepEqual([out.entries, out.problems], [[], []])
  }
})

test('a header that is no JSON array is a malformed problem; one past maxHeaderBytes is not parsed', () => {
  assert.deepEqual(extractEvents({ 'x-cloudevents': 42 }, undefined).problems, [{ outcome: 'malformed', detail: 'X-CloudEvents header is no JSON array: "42"' }])
  const big = JSON.stringify([CANCELLED, CANCELLED])
  const out = extractEvents({ 'x-cloudevents': big }, undefined, { maxHeaderBytes: 100, maxBodyBytes: 100 })
  assert.deepEqual([out.entries, out.headers, out.problems], [[], {}, [{ outcome: 'oversized', detail: `X-CloudEvents header of ${big.length} bytes, past maxHeaderBytes (100): not parsed` }]])
})

test('toEvent: a complete CloudEvent as it is; a partial one built with the publisher\'s source and dataschema; anything else says why not', () => {
  const complete = bookingReserved()
  assert.equal(toEvent(complete, '/gw', {}), complete)
  const built = toEvent({ ...CANCELLED, id: 'c-1', subject: 'b-1', time: '2026-01-01T00:00:00Z', ignored: true }, '/gw', { [CANCELLED.type]: 'https://schemas.example/cancelled.json' })
  assert.deepEqual(built, {
    specversion: '1.0', id: 'c-1', source: '/gw', type: CANCELLED.type, time: '2026-01-01T00:00:00Z', datacontenttype: 'application/json',
    dataschema: 'https://schemas.example/cancelled.json', subject: 'b-1', data: CANCELLED.data
  })
  const generated = toEvent(CANCELLED, '/gw', {}) as CloudEventJson
  assert.match(generated.id, /^[0-9a-f-]{36}$/)
  assert.deepEqual([null, [], { type: '' }, { ...complete, type: 'albergue.v1.booking.#' }, { ...complete, source: 5 }, { ...CANCELLED, id: '' }].map((entry) => toEvent(entry, '/gw', {})), [
    'event entry is no object: null',
    'event entry is no object: []',
    'event entry\'s "type" is "", not a non-empty string',
    'event entry\'s "type" "albergue.v1.booking.#" holds an MQTT wildcard ("+" or "#"), which no topic published on may hold',
    'complete CloudEvent of type "albergue.v1.booking.reserved": "source" is 5, not a non-empty string',
    'event of type "albergue.v1.booking.cancelled": "id" is "", not a non-empty string'
  ])
})

test('no header value and no body throws; the header never survives', () => {
  const convention = fc.record({ data: fc.jsonValue(), events: fc.array(fc.jsonValue(), { maxLength: 4 }), other: fc.jsonValue() }, { requiredKeys: ['data', 'events'] })
  const header = fc.oneof(fc.string(), fc.json(), fc.array(fc.json()), fc.array(fc.jsonValue()).map((entries) => JSON.stringify(entries)))
  const body = fc.oneof(fc.json(), fc.jsonValue(), fc.string(), convention, convention.map((value) => JSON.stringify(value)))
  fc.assert(fc.property(header, body, fc.constantFrom('application/json', 'text/plain'), (value, payload, type) => {
    const out = extractEvents({ 'X-CloudEvents': value, 'content-type': type }, payload, { maxHeaderBytes: 256, maxBodyBytes: 256 })
    assert.equal(Object.keys(out.headers).some((name) => name.toLowerCase() === 'x-cloudevents'), false)
    if (out.body !== payload) {
      const sent: unknown = typeof out.body === 'string' ? JSON.parse(out.body) : out.body
      assert.ok(typeof sent === 'object' && sent !== null && !Object.hasOwn(sent, 'events') && Object.hasOwn(sent, 'data'))
    }
    for (const entry of out.entries) toEvent(entry, '/gw', {})
  }), { numRuns: 300 })
})

test('types: the middleware is an express RequestHandler; the plugin registers on a fastify instance with its options typed', () => {
  expectTypeOf(gatewayMiddleware).returns.toExtend<RequestHandler>()
  expectTypeOf<FastifyInstance['gatewayEvents']['stats']>().returns.toEqualTypeOf<GatewayStats>()
  // compiled, not run: what an application writes against the types
  function wire (publisher: Publisher): void {
    const handler: RequestHandler = gatewayMiddleware({ publisher, maxEvents: 10 })
    express().use(handler).use(gatewayMiddleware({ publisher }))
    const app = Fastify()
    void app.register(gatewayInterceptor, { publisher, fallback: async (event, error) => { await Promise.resolve([event.id, error.message]) }, onOutcome: (report) => { expectTypeOf(report.count).toBeNumber() } })
    // @ts-expect-error maxEvents is a number
    void app.register(gatewayInterceptor, { publisher, maxEvents: '10' })
    // @ts-expect-error the publisher is required
    void app.register(gatewayInterceptor, {})
  }
  expectTypeOf(wire).toBeFunction()
})
