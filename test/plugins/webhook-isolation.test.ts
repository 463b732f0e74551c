import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { buildConnector } from 'undici'
import type { Broker } from '../../src/index.js'
import { Deliverer, type DeliveryOptions, type Job, type NextStep } from '../../plugins/webhooks/delivery.js'
import { UrlPolicy } from '../../plugins/webhooks/index.js'
import type { Subscription } from '../../plugins/webhooks/subscriptions.js'
import type { WebhookRequest } from '../../plugins/webhooks/request.js'
import { connect, httpUrl, mqttUrl, startBroker } from '../helpers/broker.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved } from '../helpers/events.js'
import { receiver } from '../helpers/receiver.js'

/** `promise`, or a rejection naming `what` after `ms`: a hang fails the test here, not at the suite's timeout. */
async function within<T> (ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`${what}: still pending after ${ms} ms`)) }, ms) })
  try {
    return await Promise.race([promise, late])
  } finally {
    clearTimeout(timer)
  }
}

function subscription (id: string, url: string): Subscription {
  return { id, service_id: id, webhook_url: url, topic_filters: ['#'], mqttFilters: ['#'], mode: 'binary', createdAt: new Date(0).toISOString() }
}

function job (sub: Subscription, eventId: string): Job {
  return { subscription: sub, id: `msg_${eventId}`, eventId, topic: 't', raw: Buffer.from('{}'), event: { id: eventId }, acceptedAt: Date.now(), attempts: 0, lastStatus: undefined, lastError: undefined }
}

interface Outcomes {
  readonly delivered: string[]
  readonly failed: Array<{ eventId: string | undefined, attempts: number, error: string | undefined }>
}

/** A Deliverer as the plugin makes one, recording how deliveries end. */
function deliverer (t: { after: (fn: () => Promise<void>) => void }, overrides: Partial<DeliveryOptions> & Pick<DeliveryOptions, 'build'>): { deliverer: Deliverer, outcomes: Outcomes } {
  const outcomes: Outcomes = { delivered: [], failed: [] }
  const errors: unknown[] = []
  const options: DeliveryOptions = {
    retry: { maxAttempts: 3, initialDelayMs: 5, maxDelayMs: 20 },
    timeoutMs: 2_000,
    ttlMs: 86_400_000,
    concurrency: 2,
    initialConcurrency: 2,
    latencyTargetMs: 60_000,
    // the Deliverer alone: no store of subscriptions to look a job's up in
    current: () => undefined,
    maxQueued: 100,
    breakerFailures: 100,
    breakerHalfOpenAfterMs: 60_000,
    connect: new UrlPolicy([]).connector(),
    onDelivered: (j) => { outcomes.delivered.push(j.eventId ?? '') },
    onFailed: (j) => { outcomes.failed.push({ eventId: j.eventId, attempts: j.attempts, error: j.lastError }) },
    onError: (err) => { errors.push(err) },
    ...overrides
  }
  const made = new Deliverer(options)
  t.after(async () => {
    await within(10_000, 'closing the deliverer', made.close())
    assert.deepEqual(errors, [], 'nothing reported')
  })
  return { deliverer: made, outcomes }
}

test('a request undici refuses before sending fails at once, and takes no connection from the next requests of its subscription or of another one to the same origin', async (t) => {
  const hook = await receiver(t)
  const refused = subscription('wh_refused', `${hook.url}/a`)
  const neighbour = subscription('wh_neighbour', `${hook.url}/b`)
  // undici refuses a keep-alive request header (InvalidArgumentError) in a request that passes every check of ours
  const build = (j: Job): WebhookRequest => j.eventId?.startsWith('bad') === true
    ? { headers: { 'keep-alive': 'timeout=5' }, body: 'x' }
    : { headers: { 'content-type': 'text/plain', 'ce-id': j.eventId ?? '' }, body: 'x' }
  const { deliverer: d, outcomes } = deliverer(t, { build })

  // twice the subscription's connections: in undici 7.30.2 each refusal leaves one of them taken for good
  const steps: NextStep[] = []
  for (let i = 0; i < 4; i++) steps.push(await within(5_000, `refused request ${i}`, d.attempt(job(refused, `bad-${i}`))))
  await within(5_000, 'the refused subscription\'s next request', d.attempt(job(refused, 'good-a')))
  await within(5_000, 'a request of another subscription to the same origin', d.attempt(job(neighbour, 'good-b')))
  assert.deepEqual(outcomes.delivered, ['good-a', 'good-b'])
  assert.deepEqual(hook.requests.map((r) => r.headers['ce-id']), ['good-a', 'good-b'])

  assert.deepEqual(steps.map((s) => s.kind), ['done', 'done', 'done', 'done'], 'failed for good, not retried')
  assert.equal(outcomes.failed.length, 4)
  for (const failure of outcomes.failed) {
    assert.equal(failure.attempts, 1)
    assert.match(failure.error ?? '', /^the request could not be made: InvalidArgumentError: invalid keep-alive header$/)
  }
})

test('a subscription whose endpoint never answers holds only its own connections: another subscription to the same origin is delivered at once', async (t) => {
  const hook = await receiver(t, (_n, res) => {
    if (res.req.url?.endsWith('/stuck') === true) return // never answers
    res.writeHead(200).end()
  })
  const stuck = subscription('wh_stuck', `${hook.url}/stuck`)
  const fast = subscription('wh_fast', `${hook.url}/fast`)
  const { deliverer: d, outcomes } = deliverer(t, { build: (j) => ({ headers: { 'ce-id': j.eventId ?? '' }, body: 'x' }), timeoutMs: 4_000 })
  // as many as a subscription may have in flight (concurrency 2): with one pool per origin they took all of its connections
  const held = [d.attempt(job(stuck, 's1')), d.attempt(job(stuck, 's2'))]
  await hook.next(2)
  await within(2_000, 'the other subscription\'s delivery', d.attempt(job(fast, 'f1')))
  assert.deepEqual(outcomes.delivered, ['f1'])
  // the stuck ones end by their timeout, as retries
  assert.deepEqual((await within(10_000, 'the stuck requests', Promise.all(held))).map((s) => s.kind), ['later', 'later'])
})

test('headers undici would refuse or send as Latin-1 fail the delivery at once, before undici sees them', async (t) => {
  const hook = await receiver(t)
  const sub = subscription('wh_latin', hook.url)
  const build = (j: Job): WebhookRequest => ({ headers: { 'ce-subject': j.eventId === 'check' ? 'Jos\u00e9' : 'ok \u2713' }, body: '' })
  const { deliverer: d, outcomes } = deliverer(t, { build })
  await within(5_000, 'Latin-1', d.attempt(job(sub, 'check')))
  await within(5_000, 'above U+00FF', d.attempt(job(sub, 'mark')))
  assert.deepEqual(outcomes.failed.map((f) => f.error), [
    'the request could not be made: header ce-subject has U+00E9 at index 3, outside visible US-ASCII',
    'the request could not be made: header ce-subject has U+2713 at index 3, outside visible US-ASCII'
  ])
  assert.equal(hook.requests.length, 0)
})

test('a request whose connection never opens is ended by its timeout, and closing ends soon after', async (t) => {
  // undici 7.30.2 ends neither on its AbortSignal nor on headersTimeout while the connection is being opened
  const never: buildConnector.connector = () => { /* never calls back */ }
  const { deliverer: d, outcomes } = deliverer(t, { build: () => ({ headers: {}, body: 'x' }), connect: never, timeoutMs: 300 })
  const started = performance.now()
  const step = await within(5_000, 'the attempt', d.attempt(job(subscription('wh_never', 'http://127.0.0.1:9/x'), 'e1')))
  assert.equal(step.kind, 'later', 'a timeout is retried')
  assert.ok(performance.now() - started < 3_000)
  assert.deepEqual(outcomes, { delivered: [], failed: [] })
  await within(5_000, 'close', d.close())
})

async function register (broker: Broker, body: object): Promise<void> {
  const res = await fetch(httpUrl(broker, '/api/webhooks'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  assert.equal(res.status, 201)
}

test('the issue\'s case: 40 events, 15 with a ✓ in an attribute, to a binary and a structured subscription on one host: all arrive at both, nothing is dead-lettered, shutdown is prompt', async (t) => {
  const broker = await startBroker(t, { webhooks: { defaults: { retry: { maxAttempts: 3, initialDelayMs: 5, maxDelayMs: 20 }, timeoutMs: 2_000, concurrency: 8 } } })
  const hook = await receiver(t)
  await register(broker, { service_id: 'binary', webhook_url: `${hook.url}/binary`, topic_filters: ['albergue/#'] })
  await register(broker, { service_id: 'structured', webhook_url: `${hook.url}/structured`, topic_filters: ['albergue/#'], mode: 'structured' })
  const publisher = await connect(t, mqttUrl(broker))
  const events = Array.from({ length: 40 }, (_, i) => bookingReserved({}, { subject: i % 8 < 3 ? `Peregrino José 100% ✓ ${i}` : `bed ${i}` }))
  assert.equal(events.filter((e) => String(e.subject).includes('✓')).length, 15)
  for (const event of events) await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })

  // before the fix the 9th refused header wedged the origin's pool: both subscriptions stopped here
  const requests = await hook.next(80, 10_000)
  const binary = requests.filter((r) => r.headers['ce-id'] !== undefined).map((r) => r.headers['ce-id'])
  const structured = requests.filter((r) => r.headers['ce-id'] === undefined).map((r) => (JSON.parse(r.body) as { id: string }).id)
  const ids = events.map((e) => e.id).sort()
  assert.deepEqual(binary.sort(), ids)
  assert.deepEqual(structured.sort(), ids)
  const { items } = await (await fetch(httpUrl(broker, '/api/dlq'))).json() as { items: unknown[] }
  assert.deepEqual(items, [])
  await within(10_000, 'broker shutdown', broker.close())
})
