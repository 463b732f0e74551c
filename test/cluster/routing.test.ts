import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import type { MqttClient } from 'mqtt'
import type { Broker } from '../../src/index.js'
import { connect, mqttUrl, sample, startBroker } from '../helpers/broker.js'
import { defer } from '../helpers/cleanup.js'
import { startCli } from '../helpers/cli.js'
import { redisUnavailable, startRedis } from '../helpers/redis.js'

const skip = redisUnavailable() ?? false

async function redisClient (t: TestContext, url: string): Promise<Redis> {
  const redis = new Redis(url)
  defer(t, () => { redis.disconnect() })
  return redis
}

/** How many entries a node's cluster inbox has ever taken (its length drops as the node reads). */
async function inboxAdded (redis: Redis, node: string): Promise<number> {
  if (await redis.exists(`ce-broker:cluster:inbox:${node}`) === 0) return 0
  const info: unknown = await redis.call('XINFO', 'STREAM', `ce-broker:cluster:inbox:${node}`)
  if (!Array.isArray(info)) throw new Error('XINFO STREAM answered no list')
  return Number(info[info.indexOf('entries-added') + 1])
}

/**
 * Publish probes on `publisher` until `subscriber` gets one: a subscription reaches the
 * other nodes' route tables through Redis pub/sub, a moment after its SUBACK.
 */
async function untilRouted (publisher: MqttClient, subscriber: MqttClient, topic: string): Promise<void> {
  let arrived = false
  const onMessage = (received: string): void => { if (received === topic) arrived = true }
  subscriber.on('message', onMessage)
  try {
    for (let i = 0; i < 200 && !arrived; i++) {
      await publisher.publishAsync(topic, 'probe', { qos: 1 })
      await sleep(25)
    }
  } finally {
    subscriber.off('message', onMessage)
  }
  assert.ok(arrived, `no probe on ${topic} reached the other node`)
}

/** Collect the distinct payloads `client` gets under `prefix` until there are `count`. */
async function distinct (client: MqttClient, prefix: string, count: number, timeoutMs: number): Promise<Set<string>> {
  const seen = new Set<string>()
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`${seen.size} of ${count} messages arrived`)) }, timeoutMs)
    const onMessage = (topic: string, payload: Buffer): void => {
      if (!topic.startsWith(prefix)) return
      seen.add(payload.toString())
      if (seen.size === count) {
        clearTimeout(timer)
        client.off('message', onMessage)
        resolve()
      }
    }
    client.on('message', onMessage)
  })
  return seen
}

async function twoNodes (t: TestContext, url: string): Promise<[Broker, Broker]> {
  const a = await startBroker(t, { redis: { url }, nodeId: 'node-a' })
  const b = await startBroker(t, { redis: { url }, nodeId: 'node-b' })
  return [a, b]
}

test('interest routing: a message for subscribers on its own node never goes through Redis; one for the other node goes to that node\'s inbox only', { skip }, async (t) => {
  const redis = await startRedis(t)
  const [a, b] = await twoNodes(t, redis.url)
  const admin = await redisClient(t, redis.url)
  const local = await connect(t, mqttUrl(a))
  await local.subscribeAsync('hostel/local/#', { qos: 1 })
  const remote = await connect(t, mqttUrl(b))
  await remote.subscribeAsync('hostel/remote/#', { qos: 1 })
  const publisher = await connect(t, mqttUrl(a))
  await untilRouted(publisher, remote, 'hostel/remote/probe')

  const before = await inboxAdded(admin, 'node-b')
  const localArrived = distinct(local, 'hostel/local/', 200, 20_000)
  for (let i = 0; i < 200; i++) void publisher.publishAsync('hostel/local/room', `local ${i}`, { qos: 1 })
  assert.equal((await localArrived).size, 200)
  // aedes' own $SYS heartbeat (once a minute) may cross meanwhile; 200 local messages would show
  assert.ok(await inboxAdded(admin, 'node-b') - before <= 2, 'local messages went to the other node\'s inbox')

  const remoteArrived = distinct(remote, 'hostel/remote/', 200, 20_000)
  for (let i = 0; i < 200; i++) void publisher.publishAsync('hostel/remote/room', `remote ${i}`, { qos: 1 })
  assert.equal((await remoteArrived).size, 200)
  assert.ok(await inboxAdded(admin, 'node-b') - before >= 200)
})

test('the egress node\'s Redis connections killed mid-run (CLIENT KILL): every one of 3 000 QoS 1 messages reaches its online subscriber', { skip }, async (t) => {
  const redis = await startRedis(t)
  const [a, b] = await twoNodes(t, redis.url)
  const admin = await redisClient(t, redis.url)
  const subscriber = await connect(t, mqttUrl(b), { clientId: 'notification-service' })
  await subscriber.subscribeAsync('hostel/checkin/#', { qos: 1 })
  const publisher = await connect(t, mqttUrl(a), { clientId: 'registration-service' })
  await untilRouted(publisher, subscriber, 'hostel/checkin/probe')

  const total = 3_000
  const arrived = distinct(subscriber, 'hostel/checkin/pilgrim', total, 90_000)
  let killed = 0
  const firstThird = new Promise<void>((resolve) => {
    let count = 0
    const onMessage = (topic: string): void => {
      if (topic === 'hostel/checkin/pilgrim' && ++count === total / 3) {
        subscriber.off('message', onMessage)
        resolve()
      }
    }
    subscriber.on('message', onMessage)
  })
  const sent = Array.from({ length: total }, async (_, i) => { await publisher.publishAsync('hostel/checkin/pilgrim', `pilgrim ${i}`, { qos: 1 }) })
  await firstThird
  const clients = String(await admin.call('CLIENT', 'LIST')).split('\n')
  for (const line of clients) {
    const id = /\bid=(\d+)/.exec(line)?.[1]
    if (id !== undefined && /\bname=ce-broker:node-b:/.test(line)) {
      await admin.call('CLIENT', 'KILL', 'ID', id)
      killed++
    }
  }
  // the persistence, the cluster's three, and those the plugins open from them
  assert.ok(killed >= 4, `node B had ${killed} Redis connections`)
  await Promise.all(sent)
  assert.equal((await arrived).size, total)
})

test('a node behind on its inbox holds the publishers routing to it (redis.maxRouteBacklog) and gets everything once it reads again', { skip }, async (t) => {
  const redis = await startRedis(t)
  const admin = await redisClient(t, redis.url)
  const env = { CE_BROKER_REDIS_MAX_ROUTE_BACKLOG: '100', CE_BROKER_REDIS_NODE_TIMEOUT_MS: '120000' }
  const start = async (id: string): Promise<{ mqtt: string, http: string, pid: number }> => {
    const cli = startCli(t, ['--mqtt-port', '0', '--http-port', '0', '--node-id', id, '--redis', redis.url], env)
    const ready = await cli.waitForLog((line) => line.msg === 'ready', 30_000)
    const pid = cli.child.pid
    if (pid === undefined) throw new Error(`${id} has no pid`)
    return { mqtt: `mqtt://127.0.0.1:${String(ready.mqttPort)}`, http: `http://127.0.0.1:${String(ready.httpPort)}`, pid }
  }
  const a = await start('node-a')
  const b = await start('node-b')
  const subscriber = await connect(t, b.mqtt, { clientId: 'government-gateway' })
  await subscriber.subscribeAsync('hostel/report/#', { qos: 1 })
  const publisher = await connect(t, a.mqtt, { clientId: 'booking-service' })
  await untilRouted(publisher, subscriber, 'hostel/report/probe')

  // node B stops reading: its process is frozen
  process.kill(b.pid, 'SIGSTOP')
  let resumed = false
  defer(t, () => { if (!resumed) process.kill(b.pid, 'SIGCONT') })
  const total = 2_000
  let acked = 0
  const sent = Array.from({ length: total }, async (_, i) => {
    await publisher.publishAsync('hostel/report/stay', `stay ${i}`, { qos: 1 })
    acked++
  })
  let hits = 0
  for (let i = 0; i < 400 && hits === 0; i++) {
    await sleep(50)
    hits = sample(await (await fetch(`${a.http}/metrics`)).text(), 'ce_broker_limit_hits_total', { limit: 'route_backlog' }) ?? 0
  }
  assert.equal(hits, 1, 'node A counted one episode of node B being behind')
  const held = await admin.xlen('ce-broker:cluster:inbox:node-b')
  assert.ok(held < total, `the inbox holds ${held} of ${total}: the rest wait with their publisher`)
  assert.ok(acked < total, 'the publisher is held while node B is behind')

  const arrived = distinct(subscriber, 'hostel/report/stay', total, 60_000)
  process.kill(b.pid, 'SIGCONT')
  resumed = true
  assert.equal((await arrived).size, total)
  await Promise.all(sent)
  assert.equal(acked, total)
})
