import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import type { MqttClient } from 'mqtt'
import type { Broker } from '../../src/index.js'
import { connect, httpUrl, mqttUrl, sample, startBroker } from '../helpers/broker.js'
import { redisUnavailable, startRedis } from '../helpers/redis.js'

const skip = redisUnavailable() ?? false

/** Each member's count must be within this share of N / members (round robin on each node gives exactly that). */
const TOLERANCE = 0.1

async function twoNodes (t: TestContext, url: string): Promise<[Broker, Broker]> {
  const a = await startBroker(t, { redis: { url }, nodeId: 'node-a' })
  const b = await startBroker(t, { redis: { url }, nodeId: 'node-b' })
  return [a, b]
}

/** The payloads each client receives on topics under `prefix`, recorded as they arrive. */
function record (clients: readonly MqttClient[], prefix: string): string[][] {
  return clients.map((client) => {
    const got: string[] = []
    client.on('message', (topic, payload) => { if (topic.startsWith(prefix)) got.push(payload.toString()) })
    return got
  })
}

async function until (count: () => number, n: number, timeoutMs = 15_000): Promise<void> {
  const started = Date.now()
  while (count() < n) {
    if (Date.now() - started > timeoutMs) throw new Error(`${count()} of ${n} within ${timeoutMs} ms`)
    await sleep(10)
  }
}

/**
 * Publish probes on both nodes until every member has had one from each: a member
 * reaches the other node's group through the route table, a moment after its SUBACK.
 */
async function untilEveryNodeKnowsEveryMember (publishers: readonly MqttClient[], members: readonly MqttClient[]): Promise<void> {
  const probes = record(members, 'work/probe/')
  const knowsAll = (): boolean => probes.every((got) => publishers.every((_, i) => got.includes(String(i))))
  for (let round = 0; round < 300 && !knowsAll(); round++) {
    await Promise.all(publishers.map(async (publisher, i) => { await publisher.publishAsync(`work/probe/${i}`, String(i), { qos: 1 }) }))
    await sleep(10)
  }
  assert.ok(knowsAll(), 'a node never learnt of a member on the other node')
}

test('three members on two nodes, messages published on both: each message once across the group, evenly spread', { skip }, async (t) => {
  const redis = await startRedis(t)
  const [a, b] = await twoNodes(t, redis.url)
  const members = [
    await connect(t, mqttUrl(a), { clientId: 'm1' }),
    await connect(t, mqttUrl(a), { clientId: 'm2' }),
    await connect(t, mqttUrl(b), { clientId: 'm3' })
  ]
  for (const member of members) await member.subscribeAsync('$share/workers/work/#', { qos: 1 })
  const publishers = [await connect(t, mqttUrl(a)), await connect(t, mqttUrl(b))]
  await untilEveryNodeKnowsEveryMember(publishers, members)

  const got = record(members, 'work/job/')
  const n = 60
  await Promise.all(publishers.map(async (publisher, p) => {
    for (let i = 0; i < n; i++) await publisher.publishAsync(`work/job/${p}`, `${p}-${i}`, { qos: 1 })
  }))
  await until(() => got.flat().length, 2 * n)

  assert.equal(new Set(got.flat()).size, 2 * n, 'a message arrived twice across the group')
  const fair = (2 * n) / members.length
  for (const one of got) assert.ok(Math.abs(one.length - fair) <= fair * TOLERANCE, `counts ${got.map((g) => g.length).join('/')} are not within ${TOLERANCE * 100} % of ${fair}`)
  const [metricsA, metricsB] = await Promise.all([a, b].map(async (node) => await (await fetch(httpUrl(node, '/metrics'))).text()))
  assert.equal(sample(metricsA ?? '', 'ce_broker_shared_members', { group: 'workers' }), 2)
  assert.equal(sample(metricsB ?? '', 'ce_broker_shared_members', { group: 'workers' }), 1)
})

test('a member that drops mid-run on one node: what it had not acknowledged goes to the others, none lost', { skip }, async (t) => {
  const redis = await startRedis(t)
  const [a, b] = await twoNodes(t, redis.url)
  const steady = [await connect(t, mqttUrl(a), { clientId: 'm1' }), await connect(t, mqttUrl(b), { clientId: 'm3' })]
  const dropping = await connect(t, mqttUrl(a), { clientId: 'm2' })
  for (const member of [...steady, dropping]) await member.subscribeAsync('$share/workers/work/#', { qos: 1 })
  const publishers = [await connect(t, mqttUrl(a)), await connect(t, mqttUrl(b))]
  await untilEveryNodeKnowsEveryMember(publishers, [...steady, dropping])

  // from here the dropping member acknowledges nothing (mqtt.js sends a PUBACK once handleMessage calls back)
  dropping.handleMessage = () => {}
  const got = record(steady, 'work/job/')
  const droppedGot = record([dropping], 'work/job/')[0] ?? []
  const n = 60
  await Promise.all(publishers.map(async (publisher, p) => {
    for (let i = 0; i < n; i++) {
      if (p === 1 && i === n / 2) dropping.stream.destroy()
      await publisher.publishAsync(`work/job/${p}`, `${p}-${i}`, { qos: 1 })
    }
  }))
  await until(() => new Set(got.flat()).size, 2 * n)

  const expected = publishers.flatMap((_, p) => Array.from({ length: n }, (_, i) => `${p}-${i}`)).sort()
  assert.deepEqual([...new Set(got.flat())].sort(), expected)
  assert.ok(droppedGot.length > 0, 'the dropping member got nothing: nothing was handed over')
  const metricsA = await (await fetch(httpUrl(a, '/metrics'))).text()
  assert.ok((sample(metricsA, 'ce_broker_shared_handovers_total', { group: 'workers' }) ?? 0) > 0)
})

test('a persistent session (clean=false) is a member with Redis persistence too, and again after it reconnects to the other node', { skip }, async (t) => {
  const redis = await startRedis(t)
  const [a, b] = await twoNodes(t, redis.url)
  const publisher = await connect(t, mqttUrl(a))
  const durable = await connect(t, mqttUrl(b), { clientId: 'durable', clean: false })
  await durable.subscribeAsync('$share/workers/work/#', { qos: 1 })
  await untilEveryNodeKnowsEveryMember([publisher], [durable])
  const got = record([durable], 'work/job/')[0] ?? []
  for (let i = 0; i < 10; i++) await publisher.publishAsync(`work/job/${i}`, String(i), { qos: 1 })
  await until(() => got.length, 10)
  assert.deepEqual(got.map(Number).sort((x, y) => x - y), Array.from({ length: 10 }, (_, i) => i))

  await durable.endAsync()
  const again = await connect(t, mqttUrl(a), { clientId: 'durable', clean: false })
  const later = record([again], 'work/job/')[0] ?? []
  await publisher.publishAsync('work/job/after', 'after', { qos: 1 })
  await until(() => later.length, 1)
  // acknowledged before it left: nothing of the first ten comes again
  assert.deepEqual(later, ['after'])
})
