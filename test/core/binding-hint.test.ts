import assert from 'node:assert/strict'
import { test } from 'node:test'
import { fromHttp, type BoundEvent } from '../../src/core/http/cloudevents-binding.js'
import { httpUrl, startBroker } from '../helpers/broker.js'
import { bookingReserved, type RecordData } from '../helpers/events.js'

/** What the route answers, after `event on "" rejected: invalid_cloudevent (`. */
const HINT = 'has no ce-specversion header but a JSON body that looks like a structured-mode event: send it with Content-Type: application/cloudevents+json'

function only (headers: Record<string, string>, body: string): BoundEvent {
  const bound = fromHttp(headers, Buffer.from(body))
  assert.equal(bound.mode, 'binary')
  assert.equal(bound.events.length, 1)
  const [event] = bound.events
  assert.ok(event !== undefined)
  return event
}

test('a structured event sent as application/json, text/plain or with no Content-Type is named as such, with the media type to use', () => {
  const body = JSON.stringify(bookingReserved())
  const cases: Array<[Record<string, string>, string]> = [
    [{ 'content-type': 'application/json' }, 'Content-Type "application/json"'],
    [{ 'content-type': 'text/plain; charset=utf-8' }, 'Content-Type "text/plain; charset=utf-8"'],
    [{}, 'no Content-Type'],
    // another attribute header, but no ce-specversion: still not a binary-mode event
    [{ 'content-type': 'application/json', 'ce-id': 'x' }, 'Content-Type "application/json"']
  ]
  for (const [headers, sent] of cases) {
    assert.deepEqual(only(headers, body), {
      ok: false,
      reason: 'invalid_cloudevent',
      errors: [{ path: '', message: `${HINT} (with ${sent} the request is read in binary mode, where attributes are ce-* headers and the body is the data)` }]
    }, JSON.stringify(headers))
  }
  // no specversion, but id, source and type: the same mistake
  const { specversion: _specversion, ...withoutVersion } = bookingReserved()
  const hinted = only({ 'content-type': 'application/json' }, JSON.stringify(withoutVersion))
  assert.ok(!hinted.ok)
  assert.match(hinted.errors[0]?.message ?? '', /application\/cloudevents\+json/)
})

test('no hint where the request is binary mode: a ce-specversion header, or a body that is only data', () => {
  const withVersion = only({ 'content-type': 'application/json', 'ce-specversion': '1.0', 'ce-id': '1', 'ce-source': '/s', 'ce-type': 't' }, JSON.stringify({ specversion: 'data may hold this', id: 1 }))
  assert.ok(withVersion.ok)
  assert.deepEqual(withVersion.event.data, { specversion: 'data may hold this', id: 1 })
  const dataOnly = only({ 'content-type': 'application/json' }, JSON.stringify({ booking_id: 'b-1', id: 'x' }))
  assert.deepEqual(dataOnly, { ok: true, event: { datacontenttype: 'application/json', data: { booking_id: 'b-1', id: 'x' } } }, 'read as before: the envelope check names what is missing')
  const text = only({ 'content-type': 'text/plain' }, 'specversion 1.0')
  assert.ok(text.ok)
})

test('POST /api/events with a structured event as application/json answers 400 naming application/cloudevents+json, and the request is dead-lettered', async (t) => {
  const broker = await startBroker(t)
  const event = bookingReserved()
  const body = JSON.stringify(event)
  // what `curl -H 'content-type: application/json' -d '<structured event>' /api/events` sends
  const res = await fetch(httpUrl(broker, '/api/events'), { method: 'POST', headers: { 'content-type': 'application/json' }, body })
  assert.equal(res.status, 400)
  const { error } = await res.json() as { error: { code: string, message: string, details: unknown } }
  assert.equal(error.code, 'invalid_cloudevent')
  assert.equal(error.message, `event on "" rejected: invalid_cloudevent (${HINT} (with Content-Type "application/json" the request is read in binary mode, where attributes are ce-* headers and the body is the data))`)
  assert.doesNotMatch(error.message, /specversion is required/)

  const { items } = await (await fetch(httpUrl(broker, '/api/dlq'))).json() as { items: Array<{ record: { data: RecordData } }> }
  assert.equal(items.length, 1)
  const kept = items[0]?.record.data
  assert.equal(kept?.reason, 'invalid_cloudevent')
  assert.deepEqual(kept?.payload, event, 'the event as sent')
})
