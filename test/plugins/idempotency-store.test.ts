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
    assert.equal(await store.claim('k1', DAY), true)
    assert.equal(await store.claim('k1', DAY), false)
    assert.equal(await store.claim('k2', DAY), true, 'keys are independent')
    await store.release('k1')
    assert.equal(await store.claim('k1', DAY), true, 'a released key can be claimed again')
    await store.release('never-claimed')
  })

  test(`${name} store: a claim ends with its TTL`, { skip }, async (t) => {
    const store = await make(t)
    assert.equal(await store.claim('short', 50), true)
    assert.equal(await store.claim('long', DAY), true)
    // well past the 50 ms TTL: this waits for expiry, it does not time anything
    await sleep(300)
    assert.equal(await store.claim('short', DAY), true)
    assert.equal(await store.claim('long', DAY), false)
  })

  test(`${name} store: of many claims racing for one key, exactly one wins`, { skip }, async (t) => {
    const store = await make(t)
    const results = await Promise.all(Array.from({ length: 50 }, async () => await store.claim('raced', DAY)))
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

test('the memory store keeps at most maxEntries keys, forgetting the least recently claimed and counting it', () => {
  let evicted = 0
  const store = new MemoryIdempotencyStore(2, () => { evicted++ })
  assert.equal(store.claim('a', DAY), true)
  assert.equal(store.claim('b', DAY), true)
  assert.equal(store.claim('c', DAY), true)
  assert.equal(store.size, 2)
  assert.equal(evicted, 1)
  assert.equal(store.claim('a', DAY), true, '"a" was forgotten to make room')
  assert.equal(store.claim('c', DAY), false, '"c" is still remembered')
})
