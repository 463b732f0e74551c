import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { test, type TestContext } from 'node:test'
import type { MqttClient } from 'mqtt'
import type { Broker } from '../../src/index.js'
import { collectMessages, connect, httpUrl, mqttUrl, sample, startBroker } from '../helpers/broker.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved, type RecordData } from '../helpers/events.js'
import { redisUnavailable, startRedis } from '../helpers/redis.js'

const TOUR = 'albergue.v1.tour.booked'
const TOUR_TOPIC = 'albergue/v1/tour/booked'
/** What the tour events must carry once a schema is registered for them. */
const TOUR_SCHEMA = { type: 'object', required: ['seats'], properties: { seats: { type: 'integer', minimum: 1 } } }

interface Job { id: string, state: string, matched: number, replayed: number, failed: number, skipped: number, remaining: number, startedAt: string, node: string }
interface Listed { id: string, record: { time: string, data: RecordData } }

async function call (url: string, method: string, body?: unknown): Promise<{ status: number, body: Record<string, unknown> }> {
  const init: RequestInit = body === undefined ? { method } : { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }
  const response = await fetch(url, init)
  return { status: response.status, body: await response.json() as Record<string, unknown> }
}

async function deadLetters (broker: Broker, query = ''): Promise<Listed[]> {
  return ((await call(httpUrl(broker, `/api/dlq?limit=500${query}`), 'GET')).body.items ?? []) as Listed[]
}

/** Poll `read` (bounded) until `done` holds; the last value read. */
async function until<T> (read: () => Promise<T>, done: (value: T) => boolean, what: string): Promise<T> {
  let value = await read()
  for (let i = 0; i < 500 && !done(value); i++) {
    await new Promise((resolve) => setTimeout(resolve, 20))
    value = await read()
  }
  assert.ok(done(value), `${what}: still ${JSON.stringify(value)}`)
  return value
}

async function jobOf (broker: Broker, id: string): Promise<Job> {
  return (await call(httpUrl(broker, `/api/dlq/replay/${id}`), 'GET')).body.job as Job
}

/**
 * Dead letters of three kinds, oldest first: `tours` tour events of a type with no
 * schema yet (`unknown_type`), every fourth with `seats: 0`; two bookings that break
 * their schema; one event of another unknown type. Returns the tour events by seats.
 */
async function fill (t: TestContext, broker: Broker, tours: number): Promise<{ valid: string[], invalid: string[] }> {
  const publisher = await connect(t, mqttUrl(broker), { clientId: 'tour-service' })
  const valid: string[] = []
  const invalid: string[] = []
  for (let n = 0; n < tours; n++) {
    const id = randomUUID()
    const seats = n % 4 === 3 ? 0 : 1 + n
    ;(seats === 0 ? invalid : valid).push(id)
    await publisher.publishAsync(TOUR_TOPIC, JSON.stringify({ specversion: '1.0', id, source: '/tours', type: TOUR, data: { seats } }), { qos: 1 })
  }
  for (let n = 0; n < 2; n++) await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved({ nights: 0 })), { qos: 1 })
  await publisher.publishAsync('albergue/v1/walk/started', JSON.stringify({ specversion: '1.0', id: randomUUID(), source: '/walks', type: 'albergue.v1.walk.started', data: {} }), { qos: 1 })
  await until(async () => (await deadLetters(broker)).length, (n) => n === tours + 3, 'dead letters stored')
  return { valid, invalid }
}

/** An MQTT subscriber to the tour topic. */
async function tourWatcher (t: TestContext, broker: Broker): Promise<MqttClient> {
  const watcher = await connect(t, mqttUrl(broker))
  await watcher.subscribeAsync(TOUR_TOPIC, { qos: 1 })
  return watcher
}

async function registerTourSchema (broker: Broker): Promise<void> {
  assert.equal((await call(httpUrl(broker, `/api/schemas/${TOUR}/versions`), 'POST', TOUR_SCHEMA)).status, 201)
}

const ids = (messages: ReadonlyArray<{ payload: Buffer }>): string[] => messages.map((m) => (JSON.parse(m.payload.toString()) as { id: string }).id)

test('a dry run counts the matching dead letters and shows a sample, changing nothing; bad bodies are refused naming the key', async (t) => {
  const broker = await startBroker(t)
  await fill(t, broker, 12)
  const before = await deadLetters(broker)

  const dry = await call(httpUrl(broker, '/api/dlq/replay'), 'POST', { filter: { reason: 'unknown_type', topic: 'albergue.v1.tour.*' }, dryRun: true })
  assert.equal(dry.status, 200)
  assert.equal(dry.body.matched, 12)
  const shown = dry.body.sample as Listed[]
  assert.equal(shown.length, 10, 'the sample holds ten')
  assert.ok(shown.every((s) => s.record.data.reason === 'unknown_type' && s.record.data.topic === TOUR_TOPIC))
  // by type, by time, with a limit
  const byType = await call(httpUrl(broker, '/api/dlq/replay'), 'POST', { filter: { type: 'albergue.v1.booking.reserved' }, dryRun: true })
  assert.equal(byType.body.matched, 2)
  const future = await call(httpUrl(broker, '/api/dlq/replay'), 'POST', { filter: { from: '2999-01-01T00:00:00Z' }, dryRun: true })
  assert.equal(future.body.matched, 0)
  const past = await call(httpUrl(broker, '/api/dlq/replay'), 'POST', { filter: { to: '2999-01-01T00:00:00Z' }, dryRun: true, limit: 3 })
  assert.equal(past.body.matched, 3)
  assert.deepEqual(await deadLetters(broker), before, 'a dry run changes nothing')

  const refusals: Array<[unknown, RegExp]> = [
    [{ filter: { reasn: 'x' } }, /filter\.reasn is not a known key; known keys: reason, topic, type, subscription, from, to/],
    [{ filter: {}, dryrun: true }, /dryrun is not a known key/],
    [{ filter: { from: 'yesterday' } }, /filter\.from must be an RFC 3339 date-time, got "yesterday"/],
    [{ filter: { topic: 'albergue/#/x' } }, /filter\.topic "albergue\/#\/x"/],
    [{ filter: {}, limit: 0 }, /limit must be >= 1, got 0/],
    [{ dryRun: true }, /filter is required/]
  ]
  for (const [body, message] of refusals) {
    const refused = await call(httpUrl(broker, '/api/dlq/replay'), 'POST', body)
    assert.equal(refused.status, 400, JSON.stringify(body))
    assert.match(String((refused.body.error as { message: string }).message), message)
  }
})

test('a redrive replays each matching dead letter once, oldest first, at the configured rate: accepted ones reach subscribers and leave, refused ones stay with their new reason, others are untouched', async (t) => {
  const broker = await startBroker(t, { deadLetters: { replayRatePerSecond: 20 } })
  const { valid, invalid } = await fill(t, broker, 16)
  const untouched = (await deadLetters(broker)).filter((d) => d.record.data.topic !== TOUR_TOPIC)
  await registerTourSchema(broker)
  const watcher = await tourWatcher(t, broker)
  const arrived = collectMessages(watcher, valid.length, 20_000)

  const started = await call(httpUrl(broker, '/api/dlq/replay'), 'POST', { filter: { reason: 'unknown_type', topic: 'albergue/v1/tour/#' } })
  assert.equal(started.status, 202)
  const job = started.body.job as Job
  assert.equal(job.state, 'running')
  assert.equal(job.matched, 16)
  // a second job while it runs is refused
  const second = await call(httpUrl(broker, '/api/dlq/replay'), 'POST', { filter: {} })
  assert.equal(second.status, 409)
  assert.match(String((second.body.error as { message: string }).message), new RegExp(`redrive job ${job.id} is running`))

  // the rate shows as progress: remaining goes down step by step, never up
  const seen: number[] = []
  const done = await until(async () => { const j = await jobOf(broker, job.id); seen.push(j.remaining); return j }, (j) => j.state === 'done', 'the job ends')
  assert.deepEqual(seen, [...seen].sort((a, b) => b - a), 'remaining never goes up')
  assert.ok(seen.some((n) => n > 0 && n < 16), `progress seen on the way: ${seen.join(',')}`)
  assert.deepEqual({ replayed: done.replayed, failed: done.failed, skipped: done.skipped, remaining: done.remaining }, { replayed: valid.length, failed: invalid.length, skipped: 0, remaining: 0 })
  assert.ok((sample(await broker.metrics.metrics(), 'ce_broker_dead_letter_redrive_paced_total') ?? 0) > 0, 'replays waited for the rate')
  assert.equal(sample(await broker.metrics.metrics(), 'ce_broker_dead_letter_redrive_total', { outcome: 'accepted' }), valid.length)
  assert.equal(sample(await broker.metrics.metrics(), 'ce_broker_dead_letter_redrive_total', { outcome: 'refused' }), invalid.length)

  // each accepted one arrived once, oldest first
  assert.deepEqual(ids(await arrived), valid)
  const left = await deadLetters(broker)
  const refused = left.filter((d) => d.record.data.topic === TOUR_TOPIC)
  assert.deepEqual(new Set(refused.map((d) => (d.record.data.payload as { id: string }).id)), new Set(invalid))
  assert.ok(refused.every((d) => d.record.data.reason === 'schema_validation_failed'), 'refused again: kept with the new reason')
  assert.deepEqual(left.filter((d) => d.record.data.topic !== TOUR_TOPIC), untouched, 'entries the filter does not match are untouched')
})

/** Start a slow redrive of the tour dead letters on `on`, stop it on `stopOn` once a few went, and resume it on `resumeOn`. */
async function stopAndResume (t: TestContext, on: Broker, stopOn: Broker, resumeOn: Broker): Promise<void> {
  const { valid, invalid } = await fill(t, on, 20)
  await registerTourSchema(on)
  const watcher = await tourWatcher(t, on)
  const arrived = collectMessages(watcher, valid.length, 30_000)
  const started = await call(httpUrl(on, '/api/dlq/replay'), 'POST', { filter: { reason: 'unknown_type', topic: TOUR } })
  const { id } = started.body.job as Job
  await until(async () => await jobOf(stopOn, id), (j) => j.replayed + j.failed >= 3, 'a few replayed')
  const stopped = await call(httpUrl(stopOn, `/api/dlq/replay/${id}`), 'DELETE')
  assert.equal(stopped.status, 200)
  assert.equal((stopped.body.job as Job).state, 'stopped')
  assert.ok((stopped.body.job as Job).remaining > 1, 'stopped mid-way')

  const resumed = await call(httpUrl(resumeOn, `/api/dlq/replay/${id}/resume`), 'POST')
  assert.equal(resumed.status, 202)
  const done = await until(async () => await jobOf(stopOn, id), (j) => j.state === 'done', 'the resumed job ends')
  assert.deepEqual({ replayed: done.replayed, failed: done.failed, remaining: done.remaining }, { replayed: valid.length, failed: invalid.length, remaining: 0 })
  // none twice: the first arrivals are each accepted event once
  assert.deepEqual(ids(await arrived), valid)
  assert.equal((await call(httpUrl(resumeOn, `/api/dlq/replay/${id}/resume`), 'POST')).status, 409, 'a done job does not resume')
}

test('a stopped redrive resumes where it stopped: the rest is replayed, none twice', async (t) => {
  const broker = await startBroker(t, { deadLetters: { replayRatePerSecond: 20 } })
  await stopAndResume(t, broker, broker, broker)
  assert.equal((await call(httpUrl(broker, '/api/dlq/replay/nope'), 'GET')).status, 404)
})

test('with Redis, a redrive started on one node is shown, stopped and resumed by another, none twice', { skip: redisUnavailable() ?? false }, async (t) => {
  const redis = await startRedis(t)
  const a = await startBroker(t, { nodeId: 'node-a', redis: { url: redis.url }, deadLetters: { replayRatePerSecond: 20 } })
  const b = await startBroker(t, { nodeId: 'node-b', redis: { url: redis.url }, deadLetters: { replayRatePerSecond: 20 } })
  await stopAndResume(t, a, b, b)
})

test('a redrive pacing itself slower than deadLetters.replayLeaseMs keeps its lease: a second redrive is refused (409) while it runs, not started over it', async (t) => {
  // one replay a second, a lease of 100 ms: the lease would run out in every pause
  const broker = await startBroker(t, { deadLetters: { replayRatePerSecond: 1, replayLeaseMs: 100 } })
  await fill(t, broker, 4)
  const started = await call(httpUrl(broker, '/api/dlq/replay'), 'POST', { filter: { reason: 'unknown_type' } })
  assert.equal(started.status, 202)
  const id = String((started.body.job as { id: string }).id)
  await until(async () => await jobOf(broker, id), (job) => job.replayed + job.failed >= 1, 'the first replay')
  // well inside the pause before the next replay, past the configured lease
  await new Promise((resolve) => setTimeout(resolve, 300))
  const second = await call(httpUrl(broker, '/api/dlq/replay'), 'POST', { filter: { reason: 'unknown_type' } })
  assert.equal(second.status, 409, 'a second job replaced the running one: its lease ran out while it paced itself')
})
