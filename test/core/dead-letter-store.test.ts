import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import { Redis } from 'ioredis'
import { MemoryDeadLetterStore, RedisDeadLetterStore, type DeadLetterEntry, type DeadLetterStore } from '../../src/index.js'
import { defer } from '../helpers/cleanup.js'
import { redisUnavailable, startRedis } from '../helpers/redis.js'

type MakeStore = (t: TestContext, maxEntries: number, onEvict?: (count: number) => void) => Promise<DeadLetterStore>

function entry (n: number, topic = `albergue/v1/booking/n${n}`, reason = 'schema_validation_failed'): DeadLetterEntry {
  const id = `dl-${n}`
  return {
    id,
    record: {
      specversion: '1.0',
      type: 'ce-broker.deadletter',
      source: 'ce-broker://node-a',
      id,
      time: '2026-11-23T10:00:00.000Z',
      datacontenttype: 'application/json',
      data: { reason, errors: [{ path: '/data/nights', message: 'must be integer' }], topic, clientId: n % 2 === 0 ? `booking-${n}` : null, payloadBase64: 'AAE=' }
    },
    // not UTF-8, not JSON: the bytes must come back exactly
    original: { topic, payload: Buffer.from([0, 1, 0xff, n & 0xff]), qos: 1, retain: n % 3 === 0, clientId: n % 2 === 0 ? `booking-${n}` : null }
  }
}

const ids = (entries: readonly DeadLetterEntry[]): string[] => entries.map((e) => e.id)

/** The contract every dead-letter store keeps, run against each implementation. */
function contract (name: string, make: MakeStore, skip: string | false = false): void {
  test(`${name} dead-letter store: an entry comes back as it was added, bytes included`, { skip }, async (t) => {
    const store = await make(t, 10)
    for (const n of [1, 2, 3]) await store.add(entry(n))
    for (const n of [1, 2, 3]) {
      const got = await store.get(`dl-${n}`)
      assert.deepEqual(got, entry(n))
      assert.ok(got?.original.payload.equals(entry(n).original.payload), 'the original payload is a Buffer with the same bytes')
    }
    assert.equal(await store.get('dl-unknown'), undefined)
  })

  test(`${name} dead-letter store: lists newest first, in pages that never skip or repeat`, { skip }, async (t) => {
    const store = await make(t, 100)
    for (let n = 1; n <= 7; n++) await store.add(entry(n))
    const first = await store.list({ limit: 3 })
    assert.deepEqual(ids(first.items), ['dl-7', 'dl-6', 'dl-5'])
    assert.equal(first.next, 'dl-5')
    const second = await store.list({ limit: 3, ...(first.next === undefined ? {} : { cursor: first.next }) })
    assert.deepEqual(ids(second.items), ['dl-4', 'dl-3', 'dl-2'])
    const last = await store.list({ limit: 3, ...(second.next === undefined ? {} : { cursor: second.next }) })
    assert.deepEqual(ids(last.items), ['dl-1'])
    assert.equal(last.next, undefined, 'the last page has no cursor')
    assert.deepEqual(ids((await store.list({ limit: 3, cursor: 'dl-gone' })).items), ['dl-7', 'dl-6', 'dl-5'], 'an unknown cursor starts over at the newest')
  })

  test(`${name} dead-letter store: filters by topic filter and reason`, { skip }, async (t) => {
    const store = await make(t, 100)
    await store.add(entry(1, 'albergue/v1/booking/reserved'))
    await store.add(entry(2, 'albergue/v1/payment/completed', 'delivery_failed'))
    await store.add(entry(3, 'albergue/v1/booking/cancelled', 'delivery_failed'))
    await store.add(entry(4, 'albergue/v1/pilgrim/registered'))
    assert.deepEqual(ids((await store.list({ limit: 10, topic: 'albergue/v1/booking/#' })).items), ['dl-3', 'dl-1'])
    assert.deepEqual(ids((await store.list({ limit: 10, reason: 'delivery_failed' })).items), ['dl-3', 'dl-2'])
    assert.deepEqual(ids((await store.list({ limit: 10, topic: 'albergue/+/booking/+', reason: 'delivery_failed' })).items), ['dl-3'])
    const paged = await store.list({ limit: 1, reason: 'delivery_failed' })
    assert.deepEqual([ids(paged.items), paged.next], [['dl-3'], 'dl-3'])
  })

  test(`${name} dead-letter store: beyond maxEntries the oldest are evicted and counted`, { skip }, async (t) => {
    let evicted = 0
    const store = await make(t, 3, (count) => { evicted += count })
    for (let n = 1; n <= 5; n++) await store.add(entry(n))
    assert.equal(evicted, 2)
    assert.deepEqual(ids((await store.list({ limit: 10 })).items), ['dl-5', 'dl-4', 'dl-3'])
    assert.equal(await store.get('dl-1'), undefined)
    assert.equal(await store.get('dl-2'), undefined)
  })

  test(`${name} dead-letter store: replace changes the record only; delete removes the entry once`, { skip }, async (t) => {
    const store = await make(t, 10)
    for (const n of [1, 2, 3]) await store.add(entry(n))
    const again = { ...entry(2).record, data: { ...entry(2).record.data, reason: 'invalid_cloudevent' } }
    assert.equal(await store.replace('dl-2', again), true)
    assert.equal(await store.replace('dl-unknown', again), false)
    const replaced = await store.get('dl-2')
    assert.equal(replaced?.record.data.reason, 'invalid_cloudevent')
    assert.deepEqual(replaced?.original, entry(2).original, 'the original is kept for the next replay')
    assert.deepEqual(ids((await store.list({ limit: 10 })).items), ['dl-3', 'dl-2', 'dl-1'], 'a replaced entry keeps its place')

    assert.equal(await store.delete('dl-2'), true)
    assert.equal(await store.delete('dl-2'), false)
    assert.equal(await store.get('dl-2'), undefined)
    assert.equal(await store.replace('dl-2', again), false, 'a deleted entry cannot come back through replace')
    assert.deepEqual(ids((await store.list({ limit: 10 })).items), ['dl-3', 'dl-1'])
  })
}

contract('memory', async (_t, maxEntries, onEvict) => new MemoryDeadLetterStore(maxEntries, onEvict))

const redisSkip = redisUnavailable() ?? false

async function redisConnection (t: TestContext, url: string): Promise<Redis> {
  const redis = new Redis(url)
  defer(t, () => { redis.disconnect() })
  return redis
}

contract('redis', async (t, maxEntries, onEvict) => {
  const server = await startRedis(t)
  return new RedisDeadLetterStore(await redisConnection(t, server.url), maxEntries, onEvict)
}, redisSkip)

test('redis dead-letter store: two nodes see one store, and a filtered page reads past many non-matching entries', { skip: redisSkip }, async (t) => {
  const server = await startRedis(t)
  const a = new RedisDeadLetterStore(await redisConnection(t, server.url), 1000)
  const b = new RedisDeadLetterStore(await redisConnection(t, server.url), 1000)
  // 450 entries, 3 of them on payment topics, far apart: the scan reads several batches
  for (let n = 1; n <= 450; n++) await (n % 2 === 0 ? a : b).add(entry(n, n % 150 === 0 ? `albergue/v1/payment/p${n}` : `albergue/v1/booking/b${n}`))
  const page = await b.list({ limit: 2, topic: 'albergue/v1/payment/#' })
  assert.deepEqual(ids(page.items), ['dl-450', 'dl-300'])
  const rest = await a.list({ limit: 2, topic: 'albergue/v1/payment/#', ...(page.next === undefined ? {} : { cursor: page.next }) })
  assert.deepEqual([ids(rest.items), rest.next], [['dl-150'], undefined])
  assert.equal(await a.delete('dl-300'), true)
  assert.equal(await b.get('dl-300'), undefined, 'deleted on one node, gone for the other')
})
