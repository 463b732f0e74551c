import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { NODES_KEY, journalKey } from '../../src/core/cluster/scripts.js'
import { arrival, auditedIds } from '../helpers/arrival.js'
import { connect, httpUrl, mqttUrl, sample, startBroker } from '../helpers/broker.js'
import { defer } from '../helpers/cleanup.js'
import { startCli, type CliProcess } from '../helpers/cli.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved } from '../helpers/events.js'
import { receiver } from '../helpers/receiver.js'
import { redisUnavailable, startRedis } from '../helpers/redis.js'

const skip = redisUnavailable() ?? false
/** A silent node is reaped (and its journal taken over) this long after its last heartbeat. */
const NODE_TIMEOUT_MS = '2000'
const AUDIT_STREAM = 'ce-broker:audit'

interface Node {
  readonly mqtt: string
  readonly http: string
  readonly cli: CliProcess
}

async function startNode (t: TestContext, redisUrl: string, id: string): Promise<Node> {
  const cli = startCli(t, ['--mqtt-port', '0', '--http-port', '0', '--node-id', id, '--redis', redisUrl], { CE_BROKER_REDIS_NODE_TIMEOUT_MS: NODE_TIMEOUT_MS })
  const ready = await cli.waitForLog((line) => line.msg === 'ready', 30_000)
  return { mqtt: `mqtt://127.0.0.1:${String(ready.mqttPort)}`, http: `http://127.0.0.1:${String(ready.httpPort)}`, cli }
}

async function registerHook (node: Node, url: string): Promise<void> {
  const res = await fetch(`${node.http}/api/webhooks`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ service_id: 'notification-service', webhook_url: url, topic_filters: ['albergue/#'] }) })
  assert.equal(res.status, 201)
}

/** The fields of a journal entry for `event`, published at QoS 1 by booking-service, as a node's commit writes them. */
function journalFields (event: Record<string, unknown>): string[] {
  return ['t', BOOKING_RESERVED_TOPIC, 'p', JSON.stringify(event), 'm', JSON.stringify([1, false, 'booking-service', { id: event.id, source: event.source, type: event.type }])]
}

/** A persistent QoS 1 subscriber collecting the event ids it gets. */
async function idCollector (t: TestContext, url: string, clientId: string): Promise<Set<string>> {
  const ids = new Set<string>()
  const client = await connect(t, url, { clientId, clean: false })
  client.on('message', (_topic, payload) => { ids.add(String((JSON.parse(payload.toString()) as { id: unknown }).id)) })
  await client.subscribeAsync('albergue/#', { qos: 1 })
  return ids
}

test('a node that died between its journal entry and the routing: the node that reaps it delivers the event once, and the publisher\'s resent copy is a duplicate', { skip }, async (t) => {
  const redis = await startRedis(t)
  const hook = await receiver(t)
  const b = await startNode(t, redis.url, 'node-b')
  await registerHook(b, hook.url)
  const subscriber = await idCollector(t, b.mqtt, 'registration-service')
  const seed = new Redis(redis.url)
  defer(t, () => seed.quit())
  const event = bookingReserved()
  // what node-x left in Redis when it was killed right after its commit: the claim and the entry, a heartbeat long ago
  await seed.set(`ce-broker:idem:${'/albergue/booking-service'.length}:/albergue/booking-service${String(event.id)}`, '1', 'PX', 60_000)
  await seed.xadd(journalKey('node-x'), '*', ...journalFields(event))
  await seed.zadd(NODES_KEY, 1, 'node-x')

  // the heartbeat reaps node-x and takes its journal over
  const [delivered] = await hook.next(1, 30_000)
  assert.equal(delivered?.headers['ce-id'], event.id)
  assert.deepEqual(await arrival(() => subscriber, [String(event.id)], 10_000), [])
  assert.equal(await seed.xlen(journalKey('node-x')), 0)

  // the publisher never got its ack from node-x: it sends the event again, and is told it is a duplicate
  const publisher = await connect(t, b.mqtt, { clientId: 'booking-service' })
  const told = new Promise<{ data: { reason: string } }>((resolve) => {
    publisher.on('message', (topic, payload) => { if (topic === '$rejections/booking-service') resolve(JSON.parse(payload.toString()) as { data: { reason: string } }) })
  })
  await publisher.subscribeAsync('$rejections/booking-service', { qos: 1 })
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })
  assert.equal((await told).data.reason, 'duplicate')
  await sleep(500)
  assert.equal(hook.requests.length, 1, 'delivered once')
  assert.equal(sample(await (await fetch(`${b.http}/metrics`)).text(), 'ce_broker_journal_replayed_total'), 1)
})

test('a node restarted with the same id finishes what its former process left in its journal', { skip }, async (t) => {
  const redis = await startRedis(t)
  const seed = new Redis(redis.url)
  defer(t, () => seed.quit())
  const first = await startNode(t, redis.url, 'node-a')
  const subscriber = await idCollector(t, first.mqtt, 'registration-service')
  first.cli.child.kill('SIGKILL')
  await first.cli.exited
  const event = bookingReserved()
  await seed.xadd(journalKey('node-a'), '*', ...journalFields(event))

  const restarted = await startNode(t, redis.url, 'node-a')
  // the persistent subscriber comes back and gets what was queued for it while it was away
  const back = await idCollector(t, restarted.mqtt, 'registration-service')
  assert.deepEqual(await arrival(() => new Set([...subscriber, ...back]), [String(event.id)], 10_000), [])
  assert.equal(await seed.xlen(journalKey('node-a')), 0)
})

/** Calls of each Redis command since the last `CONFIG RESETSTAT`, from `INFO commandstats`. */
async function commandCalls (redis: Redis): Promise<Map<string, number>> {
  const calls = new Map<string, number>()
  for (const match of (await redis.info('commandstats')).matchAll(/^cmdstat_([a-z|]+):calls=(\d+)/gm)) calls.set(match[1] ?? '', Number(match[2]))
  return calls
}

test('the claims and journal entries of a turn go to Redis as one script call: 2 000 QoS 1 events, a small fraction of that in calls', { skip }, async (t) => {
  const redis = await startRedis(t)
  const broker = await startBroker(t, { redis: { url: redis.url } })
  const stats = new Redis(redis.url)
  defer(t, () => stats.quit())
  const publisher = await connect(t, mqttUrl(broker), { clientId: 'booking-service' })
  const events = Array.from({ length: 2_000 }, () => bookingReserved())
  await stats.config('RESETSTAT')
  for (let start = 0; start < events.length; start += 200) {
    await Promise.all(events.slice(start, start + 200).map(async (event) => await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })))
  }
  const calls = await commandCalls(stats)
  // each event's claim and entry were taken (and its entry deleted once routed): every event is in the audit stream, none in the journal
  assert.equal(await stats.dbsize() >= events.length, true)
  assert.equal(await stats.xlen(journalKey(broker.nodeId)), 0)
  const scripts = (calls.get('evalsha') ?? 0) + (calls.get('eval') ?? 0)
  t.diagnostic(`${events.length} events: ${scripts} script calls, ${calls.get('xdel') ?? 0} XDEL, ${calls.get('xadd') ?? 0} XADD`)
  assert.ok(scripts <= events.length / 10, `${scripts} script calls for ${events.length} events`)
  assert.ok((calls.get('xdel') ?? 0) <= events.length / 10, `${calls.get('xdel') ?? 0} XDEL for ${events.length} events`)
})

test('an audit entry Redis refuses holds the ack back: the publisher is not acknowledged, and the event is finished again, audit entry included, once the stream takes it', { skip }, async (t) => {
  const redis = await startRedis(t)
  const seed = new Redis(redis.url)
  defer(t, () => seed.quit())
  // the audit stream's key holds a string: every XADD to it fails (WRONGTYPE)
  await seed.set(AUDIT_STREAM, 'not a stream')
  const broker = await startBroker(t, { redis: { url: redis.url, nodeTimeoutMs: 1_000 } })
  const publisher = await connect(t, mqttUrl(broker), { clientId: 'booking-service' })
  const event = bookingReserved()
  const closed = new Promise<void>((resolve) => { publisher.once('close', () => { resolve() }) })
  let acked = false
  publisher.publish(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 }, (err) => { if (err === undefined || err === null) acked = true })
  await closed
  assert.equal(acked, false, 'no ack without the audit entry')
  await seed.del(AUDIT_STREAM)
  for (let i = 0; i < 100 && !(await auditedIds(seed)).has(String(event.id)); i++) await sleep(100)
  assert.ok((await auditedIds(seed)).has(String(event.id)), 'the journal\'s sweep wrote the audit entry')
  assert.equal(await seed.xlen(journalKey(broker.nodeId)), 0)
})

test('an HTTP publish asking for QoS 0 is answered 202 only once its audit entry is in Redis, as QoS 1 is', { skip }, async (t) => {
  // found by review: only QoS 1/2 waited, while HTTP answers 202 whatever the qos it asks for
  const redis = await startRedis(t)
  const seed = new Redis(redis.url)
  defer(t, () => seed.quit())
  await seed.set(AUDIT_STREAM, 'not a stream')
  const broker = await startBroker(t, { redis: { url: redis.url } })
  const event = bookingReserved()
  const res = await fetch(httpUrl(broker, '/api/mqtt/publish'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ topic: BOOKING_RESERVED_TOPIC, payload: event, qos: 0 }) })
  assert.equal(res.status, 503, 'not accepted without its audit entry')
  await res.arrayBuffer()
})

test('a message Redis refuses to put in the other node\'s inbox is not acknowledged to its QoS 1 publisher', { skip }, async (t) => {
  // found by review: the outbox called the publish done whatever Redis answered
  const redis = await startRedis(t)
  const a = await startBroker(t, { nodeId: 'node-a', redis: { url: redis.url } })
  const b = await startBroker(t, { nodeId: 'node-b', redis: { url: redis.url } })
  const subscriber = await connect(t, mqttUrl(b), { clientId: 'registration-service' })
  await subscriber.subscribeAsync('hostel/#', { qos: 1 })
  const seed = new Redis(redis.url)
  defer(t, () => seed.quit())
  // node A learns node B's filter through the route table
  for (let i = 0; i < 100 && !(await routesOf(seed, 'node-b')).includes('hostel/#'); i++) await sleep(50)
  await sleep(200)
  // every XADD to node B's inbox now fails (WRONGTYPE)
  await seed.del('ce-broker:cluster:inbox:node-b')
  await seed.set('ce-broker:cluster:inbox:node-b', 'not a stream')
  const publisher = await connect(t, mqttUrl(a), { clientId: 'booking-desk' })
  const closed = new Promise<'closed'>((resolve) => { publisher.once('close', () => { resolve('closed') }) })
  const acked = publisher.publishAsync('hostel/one/booking', 'for node b', { qos: 1 }).then(() => 'acked' as const, () => 'failed' as const)
  assert.equal(await Promise.race([closed, acked]), 'closed', 'disconnected without an ack')
})

test('with redis.waitReplicas and no replica to wait for, a commit fails after redis.outageHoldMs and the node keeps its heartbeat meanwhile', { skip }, async (t) => {
  // found by review: WAIT ran on the connection the heartbeat uses, so a node waiting for replicas was reaped
  const redis = await startRedis(t)
  const seed = new Redis(redis.url)
  defer(t, () => seed.quit())
  const a = await startBroker(t, { nodeId: 'node-a', redis: { url: redis.url, waitReplicas: 1, outageHoldMs: 3_000, nodeTimeoutMs: 1_000 } })
  await startBroker(t, { nodeId: 'node-b', redis: { url: redis.url, nodeTimeoutMs: 1_000 } })
  const publisher = await connect(t, mqttUrl(a), { clientId: 'booking-service' })
  const closed = new Promise<void>((resolve) => { publisher.once('close', () => { resolve() }) })
  publisher.publish(BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved()), { qos: 1 })
  await closed
  assert.notEqual(await seed.zscore(NODES_KEY, 'node-a'), null, 'node-a is still a member: node-b did not reap it')
})

async function routesOf (redis: Redis, node: string): Promise<string[]> {
  return await redis.smembers(`ce-broker:cluster:routes:${node}`)
}
