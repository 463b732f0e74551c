import assert from 'node:assert/strict'
import { test } from 'node:test'
import { EnvelopeChecker, RECENT_PARSES, parseJson, viewPayload } from '../../src/index.js'

const EVENT = { specversion: '1.0', id: 'e-1', source: '/booking', type: 'albergue.v1.booking.reserved', data: { nights: 2 } }

test('a payload is parsed once per buffer: validation, the webhooks and a dead-letter record share the value', () => {
  const payload = Buffer.from(JSON.stringify(EVENT))
  const checked = new EnvelopeChecker().check(payload)
  assert.equal(checked.ok, true)
  const first = parseJson(payload)
  assert.equal(first.ok, true)
  assert.ok(first.ok)
  // the same object, not an equal one: nobody parsed the bytes again
  assert.equal(parseJson(payload), first)
  const view = viewPayload(payload)
  assert.ok('payload' in view)
  assert.equal(view.payload, first.value)
  // another buffer with the same bytes is another payload
  assert.notEqual(parseJson(Buffer.from(payload)), first)
})

test('a payload that is not JSON is parsed once too, and says why: the envelope check names the parser error', () => {
  const payload = Buffer.from('{"id": ')
  const parsed = parseJson(payload)
  assert.equal(parsed.ok, false)
  assert.equal(parseJson(payload), parsed)
  const checked = new EnvelopeChecker().check(payload)
  assert.equal(checked.ok, false)
  assert.ok(!checked.ok && !parsed.ok)
  assert.equal(checked.reason, 'invalid_json')
  assert.equal(checked.errors[0]?.message, parsed.error)
  assert.deepEqual(viewPayload(payload), { payloadBase64: payload.toString('base64') })
})

test('the parses kept are the last RECENT_PARSES: an old payload is parsed again, and nothing holds every payload', () => {
  const payload = Buffer.from(JSON.stringify(EVENT))
  const first = parseJson(payload)
  for (let i = 0; i < RECENT_PARSES; i++) parseJson(Buffer.from(JSON.stringify({ ...EVENT, id: `other-${i}` })))
  const again = parseJson(payload)
  // parsed anew: an equal value in another object
  assert.notEqual(again, first)
  assert.deepEqual(again, first)
  // and kept again for the readers that follow
  assert.equal(parseJson(payload), again)
})
