/**
 * Review of the attribute filters (issue 21, deliverable 2): each test names a defect
 * found in the filters, the CESQL engine or their use by the webhooks, and fails on
 * the code as reviewed for the reason its name gives.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { compileFilters, InvalidFilterError, type FilterLimits } from '../../plugins/webhooks/filters/index.js'
import { connect, httpUrl, mqttUrl, startBroker } from '../helpers/broker.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved } from '../helpers/events.js'
import { receiver } from '../helpers/receiver.js'
import { redisUnavailable, startRedis } from '../helpers/redis.js'

/** The defaults of `webhooks.filters`. */
const DEFAULTS: FilterLimits = { maxExpressionLength: 4096, maxDepth: 32, maxFilters: 64 }

function event (extensions: Record<string, unknown>): Record<string, unknown> {
  return { specversion: '1.0', id: 'e-1', source: '/albergue/hostel-service', type: 'hostel.v1.bed.freed', ...extensions }
}

/** Milliseconds `fn` takes, run once. */

async function register (brokerHttp: string, body: object): Promise<{ status: number, json: Record<string, unknown> }> {
  const res = await fetch(`${brokerHttp}/api/webhooks`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  return { status: res.status, json: await res.json() as Record<string, unknown> }
}

async function listed (brokerHttp: string): Promise<Array<Record<string, unknown>>> {
  return (await (await fetch(`${brokerHttp}/api/webhooks`)).json() as { subscriptions: Array<Record<string, unknown>> }).subscriptions
}

/** Every sample of `name` summed. */
function total (metricsText: string, name: string): number {
  return metricsText.split('\n').filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `)).reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0)
}

test('TRIM is linear in its argument: a benign TRIM(subject) filter and a subject of 1,000,000 spaces between two letters is evaluated at once, not in minutes', { timeout: 20_000 }, () => {
  const accepts = compileFilters([{ cesql: "TRIM(subject) = 'x'" }], DEFAULTS)
  // the /\p{White_Space}+$/ alternative backtracked from every position of the run of spaces: 100,000 took 4 s, this would take minutes (the timeout fails it)
  const subject = `x${' '.repeat(1_000_000)}x`
  assert.equal(accepts(event({ subject })), false)
  assert.equal(accepts(event({ subject: `  x${' '.repeat(1_000)}` })), true)
})

test('a filter whose value would exceed the longest string V8 holds (CONCAT_WS of a 140 KB attribute) neither throws out of the filter nor drops the event for the other subscriptions', async (t) => {
  const broker = await startBroker(t)
  const [hostile, audit] = [await receiver(t), await receiver(t)]
  // 4,095 characters, within webhooks.filters.maxExpressionLength: 2,039 arguments, joined by the attribute itself
  const cesql = `CONCAT_WS(s${',s'.repeat(2039)}) = ''`
  assert.ok(cesql.length <= DEFAULTS.maxExpressionLength)
  assert.equal((await register(httpUrl(broker), { service_id: 'concat', webhook_url: hostile.url, topic_filters: ['hostel/#'], filters: [{ cesql }] })).status, 201)
  // structured: a 140 KB attribute does not fit in a ce-* header of a binary-mode delivery
  assert.equal((await register(httpUrl(broker), { service_id: 'audit-desk', webhook_url: audit.url, topic_filters: ['hostel/#'], mode: 'structured' })).status, 201)

  // 4,077 copies of 140,000 characters: beyond V8's 2^29 - 24, a RangeError out of Array.prototype.join
  const big = event({ id: crypto.randomUUID(), s: 'a'.repeat(140_000) })
  const small = event({ id: crypto.randomUUID(), s: 'a' })
  const publisher = await connect(t, mqttUrl(broker))
  await publisher.publishAsync('hostel/v1/bed/freed', JSON.stringify(big), { qos: 1 })
  await publisher.publishAsync('hostel/v1/bed/freed', JSON.stringify(small), { qos: 1 })
  // the audit subscription has no filters: it gets both, whatever another subscription's filter does
  const got = await audit.next(2, 10_000)
  assert.ok(got.some((request) => (JSON.parse(request.body) as { id: string }).id === big.id), 'the audit subscription lost the event another subscription\'s filter threw on')
})

test('a LIKE pattern within webhooks.filters.maxExpressionLength against a 100 KB value gives up after a bounded number of steps (an evaluation error), not after value length x pattern length', () => {
  // `%` then 4,000 `a` then `b`: every position of the value matches 4,000 characters before it fails (400 million steps; 2.3 s)
  const accepts = compileFilters([{ cesql: `s LIKE '%${'a'.repeat(4000)}b'` }], DEFAULTS)
  const errors: string[] = []
  assert.equal(accepts(event({ s: 'a'.repeat(100_000) }), (error) => { errors.push(error.message) }), false)
  assert.equal(errors.length, 1)
  assert.match(errors[0] ?? '', /LIKE gave up after 5000000 steps/)
  // a pattern that matches within the bound still matches
  assert.equal(compileFilters([{ cesql: `s LIKE '%${'a'.repeat(40)}'` }], DEFAULTS)(event({ s: 'a'.repeat(100_000) })), true)
})

test('with Redis, a node whose webhooks.filters bounds refuse an updated subscription no longer delivers under the filters it replaced', { skip: redisUnavailable() ?? false }, async (t) => {
  const redis = await startRedis(t)
  const a = await startBroker(t, { nodeId: 'node-a', redis: { url: redis.url } })
  const b = await startBroker(t, { nodeId: 'node-b', redis: { url: redis.url }, webhooks: { filters: { maxFilters: 2 } } })
  const hook = await receiver(t)
  const subscription = { service_id: 'santiago-desk', webhook_url: hook.url, topic_filters: ['albergue/#'] }
  const santiagoOnly = [{ exact: { tenant: 'santiago' } }]
  const created = await register(httpUrl(a), { ...subscription, filters: santiagoOnly })
  assert.equal(created.status, 201)
  for (let i = 0; i < 100 && (await listed(httpUrl(b))).length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 20))
  assert.deepEqual((await listed(httpUrl(b))).map((s) => s.filters), [santiagoOnly])

  // the administrator narrows it to leon: three filters, over node-b's maxFilters
  const errorsBefore = total(await b.metrics.metrics(), 'ce_broker_errors_total')
  const leonOnly = [{ exact: { tenant: 'leon' } }, { prefix: { type: 'albergue.' } }, { suffix: { type: '.reserved' } }]
  assert.equal((await register(httpUrl(a), { ...subscription, filters: leonOnly })).status, 200)
  // node-b reports that it cannot load the new version
  for (let i = 0; i < 100 && total(await b.metrics.metrics(), 'ce_broker_errors_total') === errorsBefore; i++) await new Promise((resolve) => setTimeout(resolve, 20))
  assert.ok(total(await b.metrics.metrics(), 'ce_broker_errors_total') > errorsBefore, 'node-b reported the refusal')

  const [santiago, leon] = [bookingReserved({}, { tenant: 'santiago' }), bookingReserved({}, { tenant: 'leon' })]
  await (await connect(t, mqttUrl(b))).publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(santiago), { qos: 1 })
  await (await connect(t, mqttUrl(a))).publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(leon), { qos: 1 })
  await hook.next(1)
  await new Promise((resolve) => setTimeout(resolve, 500))
  assert.deepEqual(hook.requests.map((r) => r.headers['ce-id']), [leon.id], 'node-b delivered a santiago event under the filters the update replaced')
  assert.notDeepEqual((await listed(httpUrl(b))).map((s) => s.filters), [santiagoOnly], 'node-b still lists the replaced version')
})

test('webhooks.filters.maxExpressionLength counts characters, as its documentation and the positions of a 400 do, not UTF-16 code units', () => {
  const limits: FilterLimits = { ...DEFAULTS, maxExpressionLength: 20 }
  // 16 characters (code points), 26 UTF-16 code units
  const cesql = `s = '${'😀'.repeat(10)}'`
  assert.equal(Array.from(cesql).length, 16)
  try {
    compileFilters([{ cesql }], limits)
  } catch (err: unknown) {
    assert.ok(err instanceof InvalidFilterError)
    assert.fail(`refused: ${err.message}`)
  }
})
