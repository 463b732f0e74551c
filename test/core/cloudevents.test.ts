import assert from 'node:assert/strict'
import { test } from 'node:test'
import { EnvelopeChecker, MAX_ERRORS } from '../../src/core/cloudevents/envelope.js'
import { topicToType, typeMatchesTopic, typeToTopic } from '../../src/core/cloudevents/topic.js'

const checker = new EnvelopeChecker()
const valid = {
  specversion: '1.0',
  id: 'evt-1',
  source: '/albergue/booking-service',
  type: 'albergue.v1.booking.reserved',
  time: '2026-11-23T10:00:00Z',
  datacontenttype: 'application/json',
  dataschema: 'https://schemas.example/albergue/v1/booking/reserved.json',
  correlationid: 'flow-42',
  data: { booking_id: 'b-1' }
}

function errorsOf (event: unknown): unknown {
  const result = checker.check(Buffer.from(JSON.stringify(event)))
  assert.equal(result.ok, false)
  return result.ok ? undefined : { reason: result.reason, errors: result.errors }
}

test('a valid CloudEvents 1.0 envelope passes, with its extension attributes', () => {
  const result = checker.check(Buffer.from(JSON.stringify(valid)))
  assert.equal(result.ok, true)
  assert.equal(result.ok && result.event.correlationid, 'flow-42')
  assert.equal(checker.check(JSON.stringify({ ...valid, data: undefined, data_base64: 'aGVsbG8=' })).ok, true)
  assert.equal(checker.check(JSON.stringify({ ...valid, source: 'urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66', time: '2026-11-23T10:00:00.123+01:00' })).ok, true)
})

test('a payload that is not JSON is invalid_json', () => {
  const result = checker.check(Buffer.from('{"specversion": '))
  assert.equal(result.ok, false)
  assert.equal(!result.ok && result.reason, 'invalid_json')
})

test('every envelope rule names the attribute and the value', () => {
  const cases: Array<[Record<string, unknown>, Array<{ path: string, message: RegExp }>]> = [
    [{ ...valid, specversion: '0.3' }, [{ path: '/specversion', message: /must be equal to constant "1.0", got "0.3"/ }]],
    [{ ...valid, id: '' }, [{ path: '/id', message: /must NOT have fewer than 1 characters, got ""/ }]],
    [{ ...valid, source: 'not a uri ref with spaces' }, [{ path: '/source', message: /must match format "uri-reference"/ }]],
    [{ ...valid, type: 42 }, [{ path: '/type', message: /must be string, got 42/ }]],
    [{ ...valid, time: '23/11/2026 10:00' }, [{ path: '/time', message: /must match format "date-time", got "23\/11\/2026 10:00"/ }]],
    [{ ...valid, time: '2026-11-23T10:00:00' }, [{ path: '/time', message: /date-time/ }]],
    [{ ...valid, dataschema: '/relative/schema.json' }, [{ path: '/dataschema', message: /must match format "uri"/ }]],
    [{ ...valid, data_base64: 'aGVsbG8=' }, [{ path: '/data_base64', message: /must not be present together with data/ }]],
    [{ ...valid, TraceParent: 'x' }, [{ path: '/TraceParent', message: /not a valid extension attribute name/ }]],
    [{ ...valid, averyveryverylongextensionname: 'x' }, [{ path: '/averyveryverylongextensionname', message: /not a valid extension attribute name/ }]],
    [{ ...valid, correlationid: { nested: true } }, [{ path: '/correlationid', message: /must be string,number,boolean, got \{"nested":true\}/ }]]
  ]
  for (const [event, expected] of cases) {
    const result = errorsOf(event) as { reason: string, errors: Array<{ path: string, message: string }> }
    assert.equal(result.reason, 'invalid_cloudevent', JSON.stringify(event))
    for (const want of expected) {
      const found = result.errors.find((e) => e.path === want.path)
      assert.ok(found !== undefined, `no error at ${want.path} in ${JSON.stringify(result.errors)}`)
      assert.match(found.message, want.message)
    }
  }
})

test('missing required attributes are each reported; never more than MAX_ERRORS', () => {
  const result = errorsOf({ data: {} }) as { errors: Array<{ path: string, message: string }> }
  assert.deepEqual(result.errors.map((e) => e.path).sort(), ['/id', '/source', '/specversion', '/type'])
  const many: Record<string, unknown> = { ...valid }
  for (let i = 0; i < 50; i++) many[`ext${i}`] = [i]
  assert.equal((errorsOf(many) as { errors: unknown[] }).errors.length, MAX_ERRORS)
  assert.equal((errorsOf([valid]) as { reason: string }).reason, 'invalid_cloudevent')
})

test('type ⇄ topic: dots become slashes', () => {
  assert.equal(typeToTopic('albergue.v1.booking.reserved'), 'albergue/v1/booking/reserved')
  assert.equal(topicToType('albergue/v1/booking/reserved'), 'albergue.v1.booking.reserved')
  assert.equal(typeMatchesTopic('albergue.v1.booking.reserved', 'albergue/v1/booking/reserved'), true)
  assert.equal(typeMatchesTopic('albergue.v1.booking.reserved', 'albergue/v1/booking/confirmed'), false)
  assert.equal(typeMatchesTopic('albergue.v1.booking', 'albergue/v1/booking/reserved'), false)
  assert.equal(typeMatchesTopic('albergue/v1', 'albergue/v1'), true, 'a slash in a type maps to itself')
})

test('topic filters match as MQTT does', async () => {
  const { compileFilter } = await import('../../src/core/topics.js')
  const cases: Array<[string, string, boolean]> = [
    ['albergue/#', 'albergue/v1/booking/reserved', true], ['albergue/#', 'albergue', true], ['albergue/#', 'albergues/x', false],
    ['albergue/+/booking/#', 'albergue/v1/booking/reserved', true], ['albergue/+/booking/#', 'albergue/v1/payment/x', false],
    ['a/+', 'a/b', true], ['a/+', 'a/b/c', false], ['a/+', 'a/', true], ['a/+', 'a', false], ['+/+', '/x', true],
    ['#', '$SYS/x', false], ['+/x', '$DLQ/x', false], ['$DLQ/#', '$DLQ/a/b', true], ['a/b', 'a/b', true], ['a/b', 'a/bc', false],
    ['a/+/c', 'a//c', true], ['a/+/c', 'a/b/c/d', false], ['a/b/#', 'a/b', true], ['a/b/#', 'a', false]
  ]
  for (const [filter, topic, expected] of cases) assert.equal(compileFilter(filter)(topic), expected, `${filter} ~ ${topic}`)
})

test('time is RFC 3339: real dates, 24-hour times, leap seconds, offsets', async () => {
  const { isRfc3339 } = await import('../../src/core/cloudevents/rfc3339.js')
  for (const ok of ['2026-11-23T10:00:00Z', '2026-11-23t10:00:00z', '2024-02-29T23:59:60.123456+01:00', '2026-01-01T00:00:00.5-23:59', '1990-12-31T23:59:59+00:00']) {
    assert.equal(isRfc3339(ok), true, ok)
  }
  for (const bad of ['2026-11-23T10:00:00', '2026-11-23 10:00:00Z', '2025-02-29T10:00:00Z', '2026-13-01T10:00:00Z', '2026-04-31T10:00:00Z', '2026-11-23T24:00:00Z',
    '2026-11-23T10:60:00Z', '2026-11-23T10:00:61Z', '2026-11-23T10:00:00.Z', '2026-11-23T10:00:00+2400', '2026-11-23T10:00:00+24:00', '2026-11-23T10:00:00+01:60',
    '2026-11-23T10:00:00Zjunk', '20261123T100000Z', 'yesterday', '']) {
    assert.equal(isRfc3339(bad), false, bad)
  }
})

test('full-date is RFC 3339 too', async () => {
  const { isRfc3339Date } = await import('../../src/core/cloudevents/rfc3339.js')
  for (const ok of ['2026-05-01', '2024-02-29', '2000-02-29']) assert.equal(isRfc3339Date(ok), true, ok)
  for (const bad of ['2025-02-29', '1900-02-29', '2026-00-10', '2026-06-31', '2026-5-01', '2026-05-01T00:00:00Z', 'tomorrow']) assert.equal(isRfc3339Date(bad), false, bad)
})
