import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Redis } from 'ioredis'
import { compileFilters, InvalidFilterError, type EvaluationError, type FilterLimits } from '../../plugins/webhooks/filters/index.js'
import { connect, httpUrl, mqttUrl, sample, startBroker } from '../helpers/broker.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved } from '../helpers/events.js'
import { captureLogs } from '../helpers/logs.js'
import { receiver } from '../helpers/receiver.js'
import { redisUnavailable, startRedis } from '../helpers/redis.js'

const LIMITS: FilterLimits = { maxExpressionLength: 4096, maxDepth: 32, maxFilters: 64 }

const EVENT = {
  specversion: '1.0',
  id: 'e-1',
  source: '/albergue/booking-service',
  type: 'albergue.v1.booking.reserved',
  tenant: 'santiago',
  partitionkey: 7,
  urgent: true,
  data: { nights: 3 }
}

/** Whether `filters` pass `event`, with the evaluation errors they reported. */
function run (filters: unknown, event: Record<string, unknown> = EVENT): { passed: boolean, errors: EvaluationError[] } {
  const errors: EvaluationError[] = []
  const passed = compileFilters(filters, LIMITS)(event, (error) => { errors.push(error) })
  return { passed, errors }
}

/** The refusal of `filters`: its message, its reason and its details. */
function refusal (filters: unknown, limits: FilterLimits = LIMITS): { message: string, refusal: string, details: unknown } {
  try {
    compileFilters(filters, limits)
  } catch (err: unknown) {
    assert.ok(err instanceof InvalidFilterError, String(err))
    return { message: err.message, refusal: err.refusal, details: err.details }
  }
  assert.fail(`${JSON.stringify(filters)} compiled`)
}

test('exact, prefix and suffix: one attribute each, extensions included, non-string values as CESQL casts them to String', () => {
  const cases: Array<[unknown, boolean]> = [
    [[{ exact: { type: 'albergue.v1.booking.reserved' } }], true],
    [[{ exact: { type: 'albergue.v1.booking' } }], false],
    [[{ exact: { tenant: 'santiago' } }], true],
    [[{ exact: { tenant: 'Santiago' } }], false],
    [[{ exact: { partitionkey: '7' } }], true],
    [[{ exact: { urgent: 'true' } }], true],
    [[{ exact: { missing: 'x' } }], false],
    [[{ exact: { data: '[object Object]' } }], false],
    [[{ prefix: { type: 'albergue.v1.booking.' } }], true],
    [[{ prefix: { source: '/other/' } }], false],
    [[{ suffix: { type: '.reserved' } }], true],
    [[{ suffix: { tenant: 'leon' } }], false],
    [[{ prefix: { missing: 'x' } }], false]
  ]
  for (const [filters, passed] of cases) assert.deepEqual(run(filters), { passed, errors: [] }, JSON.stringify(filters))
})

test('all, any and not nest; the top-level array must all pass; no filters pass everything', () => {
  const reserved = { exact: { type: 'albergue.v1.booking.reserved' } }
  const leon = { exact: { tenant: 'leon' } }
  const cases: Array<[unknown, boolean]> = [
    [undefined, true],
    [[], true],
    [[reserved, leon], false],
    [[reserved, { not: leon }], true],
    [[{ all: [reserved, leon] }], false],
    [[{ any: [leon, reserved] }], true],
    [[{ any: [leon, { not: reserved }] }], false],
    [[{ not: { any: [leon, { all: [reserved, { prefix: { source: '/albergue/' } }] }] } }], false],
    [[{ cesql: "tenant IN ('leon', 'santiago') AND partitionkey > 5" }], true],
    [[{ cesql: 'urgent' }], true],
    // a value that is not a Boolean never passes
    [[{ cesql: 'tenant' }], false]
  ]
  for (const [filters, passed] of cases) assert.equal(run(filters).passed, passed, JSON.stringify(filters))
})

test('a cesql expression that fails to evaluate does not pass, and reports its error; under not, the not passes (as Knative)', () => {
  const failing = { cesql: 'INT(tenant) > 1' }
  const outcome = run([failing])
  assert.equal(outcome.passed, false)
  assert.deepEqual(outcome.errors.map((e) => [e.kind, e.message]), [['cast', 'INT: cannot cast "santiago" to Integer at 1:1']])
  assert.equal(run([{ not: failing }]).passed, true)
  assert.deepEqual(run([{ cesql: "nights > 2" }]).errors.map((e) => e.kind), ['missingAttribute'], 'data is not an attribute')
  // all stops at the first filter that fails: the expression after it is not evaluated
  assert.deepEqual(run([{ exact: { tenant: 'leon' } }, failing]), { passed: false, errors: [] })
})

test('filters that do not compile are refused naming the path, and the position in an expression', () => {
  const cases: Array<[unknown, string]> = [
    ['x', 'filters: must be an array of filters, got "x"'],
    [[{ exact: { type: 'a', source: 'b' } }], 'filters[0].exact: must name exactly one attribute; got type, source'],
    [[{ prefix: {} }], 'filters[0].prefix: must name exactly one attribute; got none'],
    [[{ prefix: { Type: 'x' } }], 'filters[0].prefix: "Type" is not an attribute name (lower-case letters and digits)'],
    [[{ suffix: { type: '' } }], 'filters[0].suffix.type: must be a non-empty string; got ""'],
    [[{ exact: { partitionkey: 7 } }], 'filters[0].exact.partitionkey: must be a non-empty string; got 7'],
    [[{ exact: { tenant: 'x' } }, { all: [] }], 'filters[1].all: must hold one filter at least'],
    [[{ any: { exact: { tenant: 'x' } } }], 'filters[0].any: must be an array of filters, got {"exact":{"tenant":"x"}}'],
    [[{ sql: "tenant = 'x'" }], 'filters[0]: "sql" is not a filter dialect; known: exact, prefix, suffix, all, any, not, cesql'],
    [[{ exact: { tenant: 'x' }, prefix: { type: 'a' } }], 'filters[0]: must have exactly one of exact, prefix, suffix, all, any, not, cesql; got exact, prefix'],
    [[null], 'filters[0]: must be an object with one of exact, prefix, suffix, all, any, not, cesql; got null'],
    [[{ not: [{ exact: { tenant: 'x' } }] }], 'filters[0].not: must be an object with one of exact, prefix, suffix, all, any, not, cesql; got [{"exact":{"tenant":"x"}}]'],
    [[{ cesql: 42 }], 'filters[0].cesql: must be a CESQL expression (a string); got 42'],
    [[{ cesql: 'partitionkey + 1' }], "filters[0].cesql: the expression's value is an Integer, never true: a filter needs a Boolean"]
  ]
  for (const [filters, message] of cases) assert.deepEqual(refusal(filters), { message, refusal: 'invalid', details: { path: message.slice(0, message.indexOf(':')) } }, message)

  assert.deepEqual(refusal([{ prefix: { type: 'albergue.' } }, { cesql: "source LIKE '/albergue/%' AND AND tenant = 'x'" }]), {
    message: 'filters[1].cesql: unexpected token "AND" at 1:31',
    refusal: 'invalid',
    details: { path: 'filters[1].cesql', line: 1, column: 31 }
  })
  assert.deepEqual(refusal([{ cesql: "tenant = 'x' OR\n  FOO(tenant)" }]), {
    message: 'filters[0].cesql: no function FOO takes 1 argument at 2:3',
    refusal: 'invalid',
    details: { path: 'filters[0].cesql', line: 2, column: 3 }
  })
})

test('the bounds: expression length, nesting (of all/any/not, and within an expression), filters in all', () => {
  const limits: FilterLimits = { maxExpressionLength: 40, maxDepth: 3, maxFilters: 5 }
  assert.deepEqual(refusal([{ cesql: `tenant = '${'x'.repeat(40)}'` }], limits), {
    message: 'filters[0].cesql: is 51 characters long, more than webhooks.filters.maxExpressionLength (40)', refusal: 'too_long', details: { path: 'filters[0].cesql' }
  })
  assert.deepEqual(refusal([{ not: { not: { not: { exact: { tenant: 'x' } } } } }], limits), {
    message: 'filters[0].not.not.not: nests deeper than webhooks.filters.maxDepth (3) levels of all, any and not', refusal: 'too_deep', details: { path: 'filters[0].not.not.not' }
  })
  assert.deepEqual(refusal([{ cesql: 'NOT (NOT (NOT (NOT urgent)))' }], limits), {
    message: 'filters[0].cesql: expression nests deeper than 3 levels (webhooks.filters.maxDepth) at 1:10', refusal: 'too_deep', details: { path: 'filters[0].cesql', line: 1, column: 10 }
  })
  assert.equal(refusal([{ any: [1, 2, 3, 4, 5].map((n) => ({ exact: { tenant: `t${n}` } })) }], limits).message, 'filters[0].any[4]: is one filter more than webhooks.filters.maxFilters (5) allows, nested ones included')
  assert.equal(run([{ not: { not: { exact: { tenant: 'santiago' } } } }]).passed, true, 'within the bounds')

  // a hostile body nests 100,000 levels: refused at the bound, never a stack overflow
  let deep: unknown = { exact: { tenant: 'x' } }
  for (let i = 0; i < 100_000; i++) deep = { not: deep }
  assert.equal(refusal([deep]).refusal, 'too_deep')
})

async function register (brokerHttp: string, body: object): Promise<{ status: number, json: Record<string, unknown> }> {
  const res = await fetch(`${brokerHttp}/api/webhooks`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  return { status: res.status, json: await res.json() as Record<string, unknown> }
}

/** A CloudEvent on a topic no validation rule checks: any type goes. */
function hostelEvent (extensions: Record<string, unknown>): Record<string, unknown> {
  return { specversion: '1.0', id: crypto.randomUUID(), source: '/albergue/hostel-service', type: 'hostel.v1.bed.freed', data: { bed: 3 }, ...extensions }
}

test('over MQTT, a subscription with filters receives exactly the matching events of a mixed stream; one without receives all', async (t) => {
  // one request at a time per subscription: each receives in publishing order
  const broker = await startBroker(t, { webhooks: { defaults: { concurrency: 1 } } })
  const [filtered, byKey, everything] = [await receiver(t), await receiver(t), await receiver(t)]
  const filters = [{ prefix: { type: 'albergue.v1.booking.' } }, { cesql: "source LIKE '/albergue/%' AND tenant = 'santiago'" }]
  const created = await register(httpUrl(broker), { service_id: 'santiago-desk', webhook_url: filtered.url, topic_filters: ['#'], filters })
  assert.equal(created.status, 201)
  assert.deepEqual(created.json.filters, filters, 'answered as given')
  const keyed = await register(httpUrl(broker), { service_id: 'partition-7', webhook_url: byKey.url, topic_filters: ['albergue/#'], filters: [{ exact: { partitionkey: '7' } }] })
  await register(httpUrl(broker), { service_id: 'audit-desk', webhook_url: everything.url, topic_filters: ['#'] })
  const listed = await (await fetch(httpUrl(broker, '/api/webhooks'))).json() as { subscriptions: Array<Record<string, unknown>> }
  assert.deepEqual(listed.subscriptions.find((s) => s.id === created.json.id)?.filters, filters, 'listed as given')

  const stream = [
    { topic: BOOKING_RESERVED_TOPIC, event: bookingReserved({}, { tenant: 'santiago' }), to: ['filtered'] },
    { topic: BOOKING_RESERVED_TOPIC, event: bookingReserved({}, { tenant: 'leon' }), to: [] },
    { topic: BOOKING_RESERVED_TOPIC, event: bookingReserved(), to: [] },
    { topic: 'hostel/v1/bed/freed', event: hostelEvent({ tenant: 'santiago' }), to: [] },
    { topic: BOOKING_RESERVED_TOPIC, event: bookingReserved({}, { source: '/other/booking', tenant: 'santiago' }), to: [] },
    { topic: BOOKING_RESERVED_TOPIC, event: bookingReserved({}, { tenant: 'santiago', partitionkey: 7 }), to: ['filtered', 'byKey'] },
    { topic: 'hostel/v1/bed/freed', event: hostelEvent({ partitionkey: 7 }), to: [] },
    // last, matching both: once it arrives, every event before it has been decided
    { topic: BOOKING_RESERVED_TOPIC, event: bookingReserved({}, { tenant: 'santiago', partitionkey: '7' }), to: ['filtered', 'byKey'] }
  ]
  const publisher = await connect(t, mqttUrl(broker))
  for (const { topic, event } of stream) await publisher.publishAsync(topic, JSON.stringify(event), { qos: 1 })

  const idsTo = (name: string): unknown[] => stream.filter((s) => s.to.includes(name)).map((s) => s.event.id)
  assert.deepEqual((await filtered.next(3)).map((r) => r.headers['ce-id']), idsTo('filtered'))
  assert.deepEqual((await byKey.next(2)).map((r) => r.headers['ce-id']), idsTo('byKey'))
  assert.deepEqual((await everything.next(stream.length)).map((r) => r.headers['ce-id']), stream.map((s) => s.event.id))
  assert.equal(filtered.requests.length, 3)
  assert.equal(byKey.requests.length, 2)

  const metrics = await broker.metrics.metrics()
  assert.equal(sample(metrics, 'ce_broker_webhook_filtered_total', { subscription: String(created.json.id) }), 5)
  // albergue/# only: the hostel events never reached its filters
  assert.equal(sample(metrics, 'ce_broker_webhook_filtered_total', { subscription: String(keyed.json.id) }), 4)
  // the booking without a tenant: its expression read a missing attribute
  assert.equal(sample(metrics, 'ce_broker_webhook_filter_errors_total', { subscription: String(created.json.id), kind: 'missingAttribute' }), 1)
})

test('an invalid expression is a 400 naming the filter and the position, and nothing is registered', async (t) => {
  const broker = await startBroker(t)
  const hook = await receiver(t)
  const reply = await register(httpUrl(broker), {
    service_id: 'santiago-desk',
    webhook_url: hook.url,
    topic_filters: ['albergue/#'],
    filters: [{ prefix: { type: 'albergue.v1.booking.' } }, { cesql: "source LIKE '/albergue/%' AND AND tenant = 'x'" }]
  })
  assert.deepEqual(reply, {
    status: 400,
    json: { error: { code: 'bad_request', message: 'filters[1].cesql: unexpected token "AND" at 1:31', details: { path: 'filters[1].cesql', line: 1, column: 31 } } }
  })
  const tooLong = await register(httpUrl(broker), { service_id: 's', webhook_url: hook.url, topic_filters: ['#'], filters: [{ cesql: `tenant = '${'x'.repeat(5000)}'` }] })
  assert.equal(tooLong.status, 400)
  const listed = await (await fetch(httpUrl(broker, '/api/webhooks'))).json() as { subscriptions: unknown[] }
  assert.deepEqual(listed.subscriptions, [])
  const metrics = await broker.metrics.metrics()
  assert.equal(sample(metrics, 'ce_broker_webhook_filters_refused_total', { reason: 'invalid' }), 1)
  assert.equal(sample(metrics, 'ce_broker_webhook_filters_refused_total', { reason: 'too_long' }), 1)
})

test('an evaluation error is counted and logged once per interval; that subscription does not get the event, the others do', async (t) => {
  const { logger, lines } = captureLogs('info')
  const broker = await startBroker(t, { logger, limits: { clientLogIntervalMs: 600_000 }, webhooks: { defaults: { concurrency: 1 } } })
  const [strict, everything] = [await receiver(t), await receiver(t)]
  const created = await register(httpUrl(broker), { service_id: 'long-stays', webhook_url: strict.url, topic_filters: ['albergue/#'], filters: [{ cesql: 'INT(stay) > 1' }] })
  await register(httpUrl(broker), { service_id: 'audit-desk', webhook_url: everything.url, topic_filters: ['albergue/#'] })

  const publisher = await connect(t, mqttUrl(broker))
  const events = [bookingReserved({}, { stay: 'abc' }), bookingReserved({}, { stay: 'two' }), bookingReserved({}, { stay: '3' })]
  for (const event of events) await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })
  assert.deepEqual((await everything.next(3)).map((r) => r.headers['ce-id']), events.map((e) => e.id))
  assert.deepEqual((await strict.next(1)).map((r) => r.headers['ce-id']), [events[2]?.id])
  assert.equal(strict.requests.length, 1)

  const metrics = await broker.metrics.metrics()
  const subscription = String(created.json.id)
  assert.equal(sample(metrics, 'ce_broker_webhook_filter_errors_total', { subscription, kind: 'cast' }), 2)
  assert.equal(sample(metrics, 'ce_broker_webhook_filtered_total', { subscription }), 2)
  const logged = lines.filter((line) => line.msg === 'webhook filter expression failed: the event is left out')
  assert.equal(logged.length, 1, 'one line per subscription per interval')
  assert.deepEqual([logged[0]?.subscription, logged[0]?.eventId, logged[0]?.kind, logged[0]?.detail], [subscription, events[0]?.id, 'cast', 'INT: cannot cast "abc" to Integer at 1:1'])
})

test('filters in the config file: compiled at start-up; an invalid one stops start-up naming the subscription and the filter', async (t) => {
  const hook = await receiver(t)
  const subscription = { service_id: 'santiago-desk', webhook_url: hook.url, topic_filters: ['albergue/#'], filters: [{ exact: { tenant: 'santiago' } }] }
  const broker = await startBroker(t, { webhooks: { subscriptions: [subscription] } })
  const publisher = await connect(t, mqttUrl(broker))
  const [leon, santiago] = [bookingReserved({}, { tenant: 'leon' }), bookingReserved({}, { tenant: 'santiago' })]
  for (const event of [leon, santiago]) await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })
  assert.deepEqual((await hook.next(1)).map((r) => r.headers['ce-id']), [santiago.id])

  await assert.rejects(startBroker(t, { webhooks: { subscriptions: [subscription, { ...subscription, service_id: 'other', filters: [{ cesql: 'tenant =' }] }] } }), {
    message: 'plugin "webhooks": webhooks.subscriptions[1]: filters[0].cesql: unexpected end of expression at 1:9'
  })
})

test('with Redis, filters registered on one node are compiled by the others from the stored subscription', { skip: redisUnavailable() ?? false }, async (t) => {
  const redis = await startRedis(t)
  const a = await startBroker(t, { nodeId: 'node-a', redis: { url: redis.url } })
  const b = await startBroker(t, { nodeId: 'node-b', redis: { url: redis.url } })
  const hook = await receiver(t)
  const filters = [{ cesql: "tenant = 'santiago'" }]
  const created = await register(httpUrl(a), { service_id: 'santiago-desk', webhook_url: hook.url, topic_filters: ['albergue/#'], filters })
  // node-b hears of it over pub/sub: a bounded poll
  const listedOnB = async (): Promise<Array<Record<string, unknown>>> => (await (await fetch(httpUrl(b, '/api/webhooks'))).json() as { subscriptions: Array<Record<string, unknown>> }).subscriptions
  for (let i = 0; i < 100 && (await listedOnB()).length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 20))
  assert.deepEqual((await listedOnB()).map((s) => [s.id, s.filters]), [[created.json.id, filters]])

  const onB = await connect(t, mqttUrl(b))
  const [leon, santiago] = [bookingReserved({}, { tenant: 'leon' }), bookingReserved({}, { tenant: 'santiago' })]
  await onB.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(leon), { qos: 1 })
  await onB.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(santiago), { qos: 1 })
  assert.deepEqual((await hook.next(1)).map((r) => r.headers['ce-id']), [santiago.id])
  assert.equal(sample(await b.metrics.metrics(), 'ce_broker_webhook_filtered_total', { subscription: String(created.json.id) }), 1, 'node-b, where both entered, left one out')
})

test('with Redis, a subscription stored before filters existed (its MQTT filters under `filters`) is read as it was meant', { skip: redisUnavailable() ?? false }, async (t) => {
  const redis = await startRedis(t)
  const hook = await receiver(t)
  const client = new Redis(redis.url)
  t.after(() => { client.disconnect() })
  const legacy = { service_id: 'registry', webhook_url: hook.url, topic_filters: ['albergue.v1.booking.*'], filters: ['albergue/v1/booking/#'], mode: 'binary', id: 'wh_legacy', createdAt: new Date(0).toISOString() }
  await client.hset('ce-broker:webhooks:subscriptions', legacy.id, JSON.stringify(legacy))

  const broker = await startBroker(t, { redis: { url: redis.url } })
  const listed = await (await fetch(httpUrl(broker, '/api/webhooks'))).json() as { subscriptions: Array<Record<string, unknown>> }
  assert.deepEqual(listed.subscriptions.map((s) => [s.id, s.mqttFilters, s.filters]), [['wh_legacy', ['albergue/v1/booking/#'], undefined]])
  const event = bookingReserved()
  await (await connect(t, mqttUrl(broker))).publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })
  assert.deepEqual((await hook.next(1)).map((r) => r.headers['ce-id']), [event.id])
})
