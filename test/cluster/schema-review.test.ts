/**
 * Review of the live schema registry with Redis (46951b8..ede66c1, then the fixes in
 * 1d7ab89). The first two (changes another node makes while this one starts) failed on
 * ede66c1 and pass since 1d7ab89; the two after the "found in the fixes" line fail on 1d7ab89.
 */
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
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

// ---- found in the fixes (1d7ab89: every version compiled in an ajv instance of its own) -------------

const ACME_RULES = [{ match: 'acme/#', cloudevents: true, schema: 'required' as const, onInvalid: 'dlq' as const }]

test('a node joins a cluster whose types $ref each other, whatever order the store lists them in', { skip }, async (t) => {
  const redis = await startRedis(t)
  const dir = await mkdtemp(join(tmpdir(), 'ce-broker-review-schemas-'))
  defer(t, () => rm(dir, { recursive: true, force: true }))
  const a = await startBroker(t, { nodeId: 'node-a', redis: { url: redis.url }, schemas: { dir }, validation: { workers: 0, rules: ACME_RULES } })
  // registered through the API in the order they depend on each other: b, then a (which $refs b)
  assert.equal((await call(a, 'POST', '/api/schemas/acme.v1.b/versions', { $id: 'https://acme.example/b.json', type: 'object', properties: { n: { type: 'integer' } } })).status, 201)
  assert.equal((await call(a, 'POST', '/api/schemas/acme.v1.a/versions', { $id: 'https://acme.example/a.json', type: 'object', properties: { n: { $ref: 'b.json#/properties/n' } } })).status, 201)
  // a second node (or node A restarted) reads the types sorted: a is compiled before b is there
  const b = await startBroker(t, { nodeId: 'node-b', redis: { url: redis.url }, schemas: { dir }, validation: { workers: 0, rules: ACME_RULES } })
  assert.equal((await call(b, 'GET', '/api/schemas/acme.v1.a/versions/latest')).status, 200)
})

test('two nodes check an event against a $ref into another type alike, whenever each started', { skip }, async (t) => {
  const redis = await startRedis(t)
  const dir = await mkdtemp(join(tmpdir(), 'ce-broker-review-schemas-'))
  defer(t, () => rm(dir, { recursive: true, force: true }))
  await writeFile(join(dir, 'acme.v1.celsius.json'), JSON.stringify({ $id: 'https://acme.example/celsius.json', type: 'number', maximum: 50 }))
  await writeFile(join(dir, 'acme.v1.reading.json'), JSON.stringify({ $id: 'https://acme.example/reading.json', type: 'object', properties: { celsius: { $ref: 'celsius.json' } }, required: ['celsius'] }))
  const options = (nodeId: string): Parameters<typeof startBroker>[1] => ({ nodeId, redis: { url: redis.url }, schemas: { dir }, validation: { workers: 0, rules: ACME_RULES } })
  const a = await startBroker(t, options('node-a'))
  // acme.v1.celsius widened (BACKWARD compatible) before node B starts
  assert.equal((await call(a, 'POST', '/api/schemas/acme.v1.celsius/versions', { $id: 'https://acme.example/celsius.json', type: 'number', maximum: 60 })).status, 201)
  const b = await startBroker(t, options('node-b'))
  const verdict = async (node: Broker): Promise<string> => {
    const subscriber = await connect(t, mqttUrl(node))
    await subscriber.subscribeAsync(['acme/v1/reading', '$DLQ/#'])
    const publisher = await connect(t, mqttUrl(node))
    await publisher.publishAsync('acme/v1/reading', JSON.stringify({ specversion: '1.0', id: `r-${node.ports.mqtt}`, source: '/acme', type: 'acme.v1.reading', data: { celsius: 55 } }), { qos: 1 })
    return (await nextMessage(subscriber, undefined)).topic
  }
  const onA = await verdict(a)
  const onB = await verdict(b)
  assert.equal(onB, onA, 'node A (started before celsius version 2) dead-letters what node B delivers: both run acme.v1.reading version 1')
})
