import assert from 'node:assert/strict'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { EventRejectedError, type EventSummary, type ValidationRule } from '../../src/index.js'
import { createRuleCheck } from '../../plugins/schema-validation/check.js'
import { CheckPool, type CheckPoolOptions } from '../../plugins/schema-validation/pool.js'
import { SchemaRegistry } from '../../plugins/schema-validation/registry.js'
import { collectMessages, connect, mqttUrl, sample, startBroker } from '../helpers/broker.js'
import { defer } from '../helpers/cleanup.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved, parseRecord } from '../helpers/events.js'

const BUNDLED = fileURLToPath(new URL('../../schemas/', import.meta.url))
const RULES: readonly ValidationRule[] = [{ match: 'albergue/#', cloudevents: true, schema: 'required', onInvalid: 'dlq' }]
const VALID_EVENT = bookingReserved()
const VALID_ID = VALID_EVENT.id
const VALID = Buffer.from(JSON.stringify(VALID_EVENT))
const INVALID = Buffer.from(JSON.stringify(bookingReserved({ nights: 0 })))

for (const workers of [0, 2]) {
  test(`validation.workers ${workers}: a burst of events keeps its order, and each event gets its own verdict`, async (t) => {
    const broker = await startBroker(t, { validation: { workers } })
    const watcher = await connect(t, mqttUrl(broker))
    await watcher.subscribeAsync(['albergue/#', '$DLQ/#'], { qos: 1 })
    const publisher = await connect(t, mqttUrl(broker), { clientId: 'booking-service' })

    // every third event is invalid; sent without waiting, so they arrive in batches
    const events = Array.from({ length: 300 }, (_, i) => bookingReserved({ nights: i % 3 === 2 ? 0 : 1 + (i % 5) }))
    const arrived = collectMessages(watcher, events.length, 20_000)
    await Promise.all(events.map(async (event) => await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })))
    const messages = await arrived

    const accepted = messages.filter((m) => m.topic === BOOKING_RESERVED_TOPIC).map((m) => (JSON.parse(m.payload.toString()) as { id: string }).id)
    const deadLetters = messages.filter((m) => m.topic === `$DLQ/${BOOKING_RESERVED_TOPIC}`).map((m) => parseRecord(m.payload).data)
    assert.deepEqual(accepted, events.filter((_, i) => i % 3 !== 2).map((e) => e.id), 'valid events arrive, all of them, in the order sent')
    assert.deepEqual(deadLetters.map((d) => (d.payload as { id: string }).id), events.filter((_, i) => i % 3 === 2).map((e) => e.id))
    assert.ok(deadLetters.every((d) => d.reason === 'schema_validation_failed' && d.errors[0]?.path === '/data/nights'))
    assert.equal(publisher.connected, true)

    const metrics = await broker.metrics.metrics()
    assert.equal(sample(metrics, 'ce_broker_validation_workers'), workers, 'the checks ran on that many workers')
    assert.equal(sample(metrics, 'ce_broker_events_total', { outcome: 'accepted' }), 200)
    assert.equal(sample(metrics, 'ce_broker_events_total', { outcome: 'rejected', reason: 'schema_validation_failed' }), 100)
  })
}

interface PoolHarness {
  readonly options: CheckPoolOptions
  readonly lost: Error[]
  /** What each accepted check was told of its event. */
  readonly described: EventSummary[]
  /** A publish attempt, as far as the pool sees one. */
  readonly target: { describe: (event: EventSummary) => void }
}

async function harness (worker: string): Promise<PoolHarness> {
  const registry = await SchemaRegistry.load(BUNDLED)
  const checkEvent = createRuleCheck(registry)
  const lost: Error[] = []
  const described: EventSummary[] = []
  return {
    lost,
    described,
    target: { describe: (event) => { described.push(event) } },
    options: {
      size: 1,
      setup: { rules: RULES, registry: registry.snapshot() },
      inline: (rule, topic, payload) => {
        const policy = RULES[rule]
        if (policy === undefined) throw new RangeError(`no rule ${rule}`)
        return checkEvent(policy, topic, payload)
      },
      onWorkerLost: (err) => { lost.push(err) },
      workerUrl: new URL(`../fixtures/${worker}.ts`, import.meta.url)
    }
  }
}

function isSchemaRejection (err: unknown): boolean {
  return err instanceof EventRejectedError && err.reason === 'schema_validation_failed' && err.topic === BOOKING_RESERVED_TOPIC
}

test('when a worker dies, the checks it held are made inline, in order, and the pool carries on without it', async (t) => {
  const h = await harness('dying-validation-worker')
  const pool = await CheckPool.start(h.options)
  defer(t, async () => { await pool.close() })

  const settled: string[] = []
  const first = pool.check(0, BOOKING_RESERVED_TOPIC, VALID, h.target)?.then(() => { settled.push('valid') })
  const second = pool.check(0, BOOKING_RESERVED_TOPIC, INVALID, h.target)?.catch((err: unknown) => { settled.push(isSchemaRejection(err) ? 'rejected' : `wrong: ${String(err)}`) })
  assert.ok(first !== undefined && second !== undefined, 'with a worker alive, checks are asynchronous')
  await Promise.all([first, second])
  assert.deepEqual(settled, ['valid', 'rejected'])
  assert.equal(h.lost.length, 1)
  assert.match(h.lost[0]?.message ?? '', /exited with code 3/)
  assert.equal(pool.size, 0)

  // no worker left: checks run in the caller's thread and answer at once
  assert.equal(pool.check(0, BOOKING_RESERVED_TOPIC, VALID, h.target), undefined)
  assert.throws(() => pool.check(0, BOOKING_RESERVED_TOPIC, INVALID, h.target), isSchemaRejection)
  assert.deepEqual(h.described.map((e) => e.id), [VALID_ID, VALID_ID], 'each accepted check told its event')
})

test('closing the pool settles the checks still in flight, inline', async () => {
  const h = await harness('silent-validation-worker')
  const pool = await CheckPool.start(h.options)
  const outcomes = Promise.allSettled([pool.check(0, BOOKING_RESERVED_TOPIC, VALID, h.target), pool.check(0, BOOKING_RESERVED_TOPIC, INVALID, h.target)])
  await pool.close()
  const [valid, invalid] = await outcomes
  assert.equal(valid?.status, 'fulfilled')
  assert.ok(invalid?.status === 'rejected' && isSchemaRejection(invalid.reason))
  assert.deepEqual(h.lost, [], 'a worker stopped by close() is not a lost worker')
  assert.deepEqual(h.described, [{ id: VALID_ID, type: VALID_EVENT.type, source: VALID_EVENT.source, time: VALID_EVENT.time, schemaVersion: 1 }], 'what later plugins get to know of the event')
})

test('a worker that fails to load fails the start, naming why', async () => {
  const h = await harness('broken-validation-worker')
  await assert.rejects(CheckPool.start(h.options), /cannot compile the schemas here/)
})
