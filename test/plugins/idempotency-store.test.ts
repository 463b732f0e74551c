import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { MemoryIdempotencyStore, RedisIdempotencyStore, type IdempotencyStore } from '../../plugins/idempotency/index.js'
import { defer } from '../helpers/cleanup.js'
import { redisUnavailable, startRedis } from '../helpers/redis.js'

const DAY = 24 * 60 * 60 * 1000

/** The contract every idempotency store keeps, run against each implementation. */
function contract (name: string, make: (t: TestContext) => Promise<IdempotencyStore>, skip: string | false = false): void {
  test(`${name} store: a key is claimed once, until it is released`, { skip }, async (t) => {
    const store = await make(t)
    assert.equal(await store.claim('/s', 'k1', DAY), true)
    assert.equal(await store.claim('/s', 'k1', DAY), false)
    assert.equal(await store.claim('/s', 'k2', DAY), true, 'ids are independent')
    await store.release('/s', 'k1')
    assert.equal(await store.claim('/s', 'k1', DAY), true, 'a released event can be claimed again')
    await store.release('/s', 'never-claimed')
    await store.release('/other', 'k1')
    assert.equal(await store.claim('/s', 'k1', DAY), false, 'releasing another source\'s event leaves this one claimed')
  })

  test(`${name} store: the same id from another source is another event`, { skip }, async (t) => {
    const store = await make(t)
    assert.equal(await store.claim('/a', 'id-1', DAY), true)
    assert.equal(await store.claim('/b', 'id-1', DAY), true)
    assert.equal(await store.claim('/c', 'id-1', DAY), true)
    assert.equal(await store.claim('/a', 'id-1', DAY), false)
    assert.equal(await store.claim('/b', 'id-1', DAY), false)
    // no source + id pair spells another's: "/a" + "b1" is not "/ab" + "1"
    assert.equal(await store.claim('/a', 'b1', DAY), true)
    assert.equal(await store.claim('/ab', '1', DAY), true)
    await store.release('/b', 'id-1')
    assert.equal(await store.claim('/b', 'id-1', DAY), true, 'released for /b only')
    assert.equal(await store.claim('/a', 'id-1', DAY), false, 'still claimed for /a')
    assert.equal(await store.claim('/c', 'id-1', DAY), false, 'still claimed for /c')
  })

  test(`${name} store: a claim ends with its TTL`, { skip }, async (t) => {
    const store = await make(t)
    assert.equal(await store.claim('/s', 'short', 50), true)
    assert.equal(await store.claim('/s', 'long', DAY), true)
    // well past the 50 ms TTL: this waits for expiry, it does not time anything
    await sleep(300)
    assert.equal(await store.claim('/s', 'short', DAY), true)
    assert.equal(await store.claim('/s', 'long', DAY), false)
  })

  test(`${name} store: of many claims racing for one key, exactly one wins`, { skip }, async (t) => {
    const store = await make(t)
    const results = await Promise.all(Array.from({ length: 50 }, async () => await store.claim('/s', 'raced', DAY)))
    assert.equal(results.filter((won) => won).length, 1)
  })
}

contract('memory', async () => new MemoryIdempotencyStore(1000))

const redisSkip = redisUnavailable() ?? false
contract('redis', async (t) => {
  const server = await startRedis(t)
  const redis = new Redis(server.url)
  defer(t, () => { redis.disconnect() })
  // a fresh prefix per test: REDIS_URL may point at a server other tests use
  return new RedisIdempotencyStore(redis, `test:${Math.random().toString(36).slice(2)}:`)
}, redisSkip)

test('the memory store keeps at most maxEntries ids, forgetting the least recently claimed and counting it', () => {
  let evicted = 0
  const store = new MemoryIdempotencyStore(2, () => { evicted++ })
  assert.equal(store.claim('/s', 'a', DAY), true)
  assert.equal(store.claim('/s', 'b', DAY), true)
  assert.equal(store.claim('/s', 'a', DAY), false, 'checking "a" does not make it recent')
  assert.equal(store.claim('/s', 'c', DAY), true)
  assert.equal(store.size, 2)
  assert.equal(evicted, 1)
  assert.equal(store.claim('/s', 'a', DAY), true, '"a", claimed first, was forgotten to make room')
  assert.equal(store.claim('/s', 'c', DAY), false, '"c" is still remembered')
})

test('the memory store stays bounded when many sources send the same ids (counters like "1", "2")', () => {
  const store = new MemoryIdempotencyStore(100)
  for (let s = 0; s < 1000; s++) {
    for (let i = 0; i < 5; i++) assert.equal(store.claim(`/service-${s}`, String(i), DAY), true, `/service-${s} ${i}`)
  }
  assert.ok(store.size <= 200, `at most maxEntries per LRU, got ${store.size}`)
  assert.equal(store.claim('/service-999', '4', DAY), false, 'the latest claims are remembered')
  assert.equal(store.claim('/service-0', '0', DAY), false, 'the first claimer of an id is kept under the id')
  assert.equal(store.claim('/service-1', '0', DAY), true, 'the oldest of the others are forgotten')
})
