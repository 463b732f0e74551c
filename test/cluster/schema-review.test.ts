/**
 * Review of the live schema registry with Redis (46951b8..HEAD): changes another node
 * makes while this one starts. Each test fails on the code under review.
 */
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import { createLogger, type Broker } from '../../src/index.js'
import { LiveRegistry } from '../../plugins/schema-validation/live.js'
import { RedisRegistryStore, SCHEMA_CHANGES_CHANNEL } from '../../plugins/schema-validation/redis-store.js'
import { DEFAULT_TYPE_CONFIG } from '../../plugins/schema-validation/registry.js'
import type { TypeHistory } from '../../plugins/schema-validation/versions.js'
import { connect, httpUrl, mqttUrl, nextMessage, startBroker } from '../helpers/broker.js'
import { defer } from '../helpers/cleanup.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved } from '../helpers/events.js'
import { redisUnavailable, startRedis } from '../helpers/redis.js'

const skip = redisUnavailable() ?? false
const TYPE = 'albergue.v1.booking.reserved'
const OTHER = 'albergue.v1.booking.expired'
const BUNDLED = fileURLToPath(new URL('../../schemas/', import.meta.url))

/** A bundled schema with `title` changed: an annotation, so compatible under every rule. */
async function retitled (type: string, title: string): Promise<Record<string, unknown>> {
  const schema: Record<string, unknown> = JSON.parse(await readFile(join(BUNDLED, `${type}.json`), 'utf8'))
  return { ...schema, title }
}

async function call (node: Broker, method: string, path: string, body?: unknown): Promise<{ status: number, body: unknown }> {
  const res = await fetch(httpUrl(node, path), body === undefined ? { method } : { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  return { status: res.status, body: await res.json() }
}

async function until (what: string, done: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (await done()) return
    await sleep(25)
  }
  assert.fail(`never: ${what}`)
}

test('a node that starts while another registers a version hears of it: no notice is lost between reading the store and following its channel', { skip }, async (t) => {
  const redis = await startRedis(t)
  const a = await startBroker(t, { nodeId: 'node-a', redis: { url: redis.url } })
  const client = new Redis(redis.url)
  defer(t, () => { client.disconnect() })

  // node B's store, exactly as the plugin makes it; node A registers once B has read the histories
  let interleaved = false
  class RegisteredMeanwhile extends RedisRegistryStore {
    override async load (): Promise<Map<string, TypeHistory>> {
      const histories = await super.load()
      if (!interleaved) {
        interleaved = true
        assert.equal((await call(a, 'POST', `/api/schemas/${TYPE}/versions`, await retitled(TYPE, 'version 2'))).status, 201)
      }
      return histories
    }
  }
  const b = await LiveRegistry.start({ dir: BUNDLED, store: new RegisteredMeanwhile(client), defaults: DEFAULT_TYPE_CONFIG, log: createLogger('silent', 'node-b'), onChange: () => {} })
  defer(t, () => b.close())

  // a later change, to another type, reaches node B: its notices flow
  assert.equal((await call(a, 'POST', `/api/schemas/${OTHER}/versions`, await retitled(OTHER, 'version 2'))).status, 201)
  await until(`node B hears of ${OTHER} version 2`, () => b.registry.latest(OTHER)?.version === 2)
  assert.equal(b.registry.latest(TYPE)?.version, 2, `node B never heard of ${TYPE} version 2: its notice went out before B subscribed, and nothing reads the type again`)
})

test('a change heard while the validation workers start reaches them: the node\'s workers and its API agree', { skip }, async (t) => {
  const redis = await startRedis(t)
  const a = await startBroker(t, { nodeId: 'node-a', redis: { url: redis.url }, validation: { workers: 0 } })
  const probe = new Redis(redis.url)
  defer(t, () => { probe.disconnect() })
  const following = async (): Promise<number> => {
    const reply = await probe.pubsub('NUMSUB', SCHEMA_CHANGES_CHANNEL) as [string, number]
    return Number(reply[1])
  }
  assert.equal(await following(), 1)

  let started = false
  const starting = startBroker(t, { nodeId: 'node-b', redis: { url: redis.url }, validation: { workers: 1 } })
  void starting.then(() => { started = true }, () => {})
  // node B follows the channel (its registry is loaded) and is starting its validation worker
  while (await following() < 2) await sleep(1)
  assert.equal((await call(a, 'PUT', `/api/schemas/${TYPE}/config`, { mode: 'shadow' })).status, 200)
  assert.equal(started, false, 'inconclusive: node B finished starting before the change (the race this test sets up was lost)')
  const b = await starting
  const modeOnB = async (): Promise<unknown> => {
    const { body } = await call(b, 'GET', `/api/schemas/${TYPE}/config`)
    return typeof body === 'object' && body !== null ? Reflect.get(body, 'mode') : undefined
  }
  await until('node B lists the type in shadow mode', async () => await modeOnB() === 'shadow')

  const subscriber = await connect(t, mqttUrl(b))
  await subscriber.subscribeAsync([BOOKING_RESERVED_TOPIC, '$DLQ/#'])
  const publisher = await connect(t, mqttUrl(b))
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved({ nights: 0 })), { qos: 1 })
  assert.equal((await nextMessage(subscriber)).topic, BOOKING_RESERVED_TOPIC, 'dead-lettered: node B\'s validation worker never got the change (pool was undefined when it was applied), while its API says shadow')
})
