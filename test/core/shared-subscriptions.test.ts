import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { MqttClient } from 'mqtt'
import { hashPassword } from '../../plugins/auth/index.js'
import { connect, httpUrl, mqttUrl, nextMessage, sample, startBroker, subscribeGranted } from '../helpers/broker.js'

/** Each member's count must be within this share of N / members (round robin gives exactly that when no queue is full). */
const TOLERANCE = 0.1

/** The payloads each client receives on topics under `prefix`, recorded as they arrive. */
function record (clients: readonly MqttClient[], prefix: string): string[][] {
  return clients.map((client) => {
    const got: string[] = []
    client.on('message', (topic, payload) => { if (topic.startsWith(prefix)) got.push(payload.toString()) })
    return got
  })
}

/** Resolves once `count()` reaches `n`, or rejects after `timeoutMs` saying how many came. */
async function until (count: () => number, n: number, timeoutMs = 10_000): Promise<void> {
  const started = Date.now()
  while (count() < n) {
    if (Date.now() - started > timeoutMs) throw new Error(`${count()} of ${n} within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

function assertEven (counts: readonly number[], n: number): void {
  const fair = n / counts.length
  for (const count of counts) assert.ok(Math.abs(count - fair) <= fair * TOLERANCE, `counts ${counts.join('/')} are not within ${TOLERANCE * 100} % of ${fair}`)
}

test('$share/<group>/<filter> on MQTT 3.1.1: three members (one over WebSocket) get each message once in all, in turn; ordinary subscribers get every one; no retained message on subscribe', async (t) => {
  const broker = await startBroker(t)
  const publisher = await connect(t, mqttUrl(broker))
  await publisher.publishAsync('jobs/retained', 'old', { qos: 1, retain: true })
  const members = [
    await connect(t, mqttUrl(broker), { clientId: 'worker-1' }),
    await connect(t, mqttUrl(broker), { clientId: 'worker-2' }),
    await connect(t, `ws://127.0.0.1:${broker.ports.http}/mqtt`, { clientId: 'worker-ws' })
  ]
  const observer = await connect(t, mqttUrl(broker))
  for (const member of members) assert.deepEqual(await subscribeGranted(member, ['$share/workers/jobs/#'], 1), [1])
  await observer.subscribeAsync('jobs/+', { qos: 1 })
  const got = record(members, 'jobs/')
  const seen = record([observer], 'jobs/n')[0] ?? []

  const n = 90
  await Promise.all(Array.from({ length: n }, async (_, i) => { await publisher.publishAsync(`jobs/n${i}`, String(i), { qos: 1 }) }))
  await until(() => got.reduce((sum, one) => sum + one.length, 0), n)
  await until(() => seen.length, n)

  const all = got.flat()
  assert.equal(all.length, n)
  assert.equal(new Set(all).size, n, 'a message arrived twice across the group')
  assert.ok(!all.includes('old'), 'a retained message was sent on a shared subscription')
  assertEven(got.map((one) => one.length), n)

  const metrics = await (await fetch(httpUrl(broker, '/metrics'))).text()
  assert.equal(sample(metrics, 'ce_broker_shared_delivered_total', { group: 'workers' }), n)
  assert.equal(sample(metrics, 'ce_broker_shared_members', { group: 'workers' }), 3)
})

test('a QoS 1 member killed with messages unacknowledged: the other members get them, none lost', async (t) => {
  const broker = await startBroker(t)
  const publisher = await connect(t, mqttUrl(broker))
  const steady = [await connect(t, mqttUrl(broker), { clientId: 'steady-1' }), await connect(t, mqttUrl(broker), { clientId: 'steady-2' })]
  // receives, never acknowledges: mqtt.js sends a PUBACK once handleMessage (its flow-control hook) calls back
  const stuck = await connect(t, mqttUrl(broker), { clientId: 'stuck' })
  stuck.handleMessage = () => {}
  for (const member of [...steady, stuck]) await member.subscribeAsync('$share/g/orders/#', { qos: 1 })
  const got = record(steady, 'orders/')
  const stuckGot = record([stuck], 'orders/')[0] ?? []

  const n = 30
  // each publish completes once written to its member's socket: a third of them wait unacknowledged in the stuck one
  for (let i = 0; i < n; i++) await publisher.publishAsync(`orders/${i}`, String(i), { qos: 1 })
  await until(() => stuckGot.length, 1)
  stuck.stream.destroy()
  await until(() => got.flat().length, n)

  assert.deepEqual(got.flat().map(Number).sort((a, b) => a - b), Array.from({ length: n }, (_, i) => i))
  assert.ok(stuckGot.every((id) => got.flat().includes(id)), 'a message the killed member held was not handed over')
  const metrics = await (await fetch(httpUrl(broker, '/metrics'))).text()
  // in turn, the stuck member was sent a third of them
  assert.equal(sample(metrics, 'ce_broker_shared_handovers_total', { group: 'g' }), n / 3)
})

test('UNSUBSCRIBE leaves the group; a persistent session keeps its membership across a reconnect', async (t) => {
  const broker = await startBroker(t)
  const publisher = await connect(t, mqttUrl(broker))
  const leaving = await connect(t, mqttUrl(broker), { clientId: 'leaving' })
  const durable = await connect(t, mqttUrl(broker), { clientId: 'durable', clean: false })
  await leaving.subscribeAsync('$share/g/tasks/#', { qos: 1 })
  await durable.subscribeAsync('$share/g/tasks/#', { qos: 1 })
  await leaving.unsubscribeAsync('$share/g/tasks/#')
  const left = record([leaving], 'tasks/')[0] ?? []
  const first = collectN(durable, 4)
  for (let i = 0; i < 4; i++) await publisher.publishAsync(`tasks/${i}`, String(i), { qos: 1 })
  assert.deepEqual((await first).sort(), ['0', '1', '2', '3'])

  await durable.endAsync()
  const again = await connect(t, mqttUrl(broker), { clientId: 'durable', clean: false })
  const next = nextMessage(again, 'tasks/after')
  await publisher.publishAsync('tasks/after', 'after', { qos: 1 })
  assert.equal((await next).payload.toString(), 'after')
  assert.deepEqual(left, [])
})

test('the ACL judges the <filter> of $share/<group>/<filter>; a bad group name is refused with SUBACK 0x80', async (t) => {
  const password = await hashPassword('pass', 10)
  const broker = await startBroker(t, {
    auth: {
      users: [{ username: 'desk', password, roles: ['desk'] }],
      acl: [{ role: 'desk', publish: [], subscribe: ['albergue/v1/booking/#', '$rejections/%c'] }]
    }
  })
  const client = await connect(t, mqttUrl(broker), { username: 'desk', password: 'pass', clientId: 'desk-1' })
  assert.deepEqual(await subscribeGranted(client, ['$share/g/albergue/v1/booking/#', '$share/g/albergue/v1/payment/#'], 1), [1, 128])
  assert.deepEqual(await subscribeGranted(client, ['$share/g/$rejections/desk-2', '$share/g/$rejections/desk-1'], 1), [128, 1])
  // a group holding `+` or `#` within a level is not a filter at all (aedes closes the client): `+` alone, empty or missing are refused
  assert.deepEqual(await subscribeGranted(client, ['$share/+/albergue/v1/booking/#', '$share//albergue/v1/booking/#', '$share/g', '$share/g/', '$share'], 1), [128, 128, 128, 128, 128])
  const metrics = await (await fetch(httpUrl(broker, '/metrics'))).text()
  assert.equal(sample(metrics, 'ce_broker_limit_hits_total', { limit: 'shared_group_name' }), 5)
})

test('limits.maxSharedGroups: a subscription that would start one group too many gets SUBACK 0x80; joining an existing group still works', async (t) => {
  const broker = await startBroker(t, { limits: { maxSharedGroups: 1 } })
  const a = await connect(t, mqttUrl(broker))
  const b = await connect(t, mqttUrl(broker))
  assert.deepEqual(await subscribeGranted(a, ['$share/one/x/#'], 1), [1])
  assert.deepEqual(await subscribeGranted(b, ['$share/two/x/#', '$share/one/x/#'], 1), [128, 1])
  const metrics = await (await fetch(httpUrl(broker, '/metrics'))).text()
  assert.equal(sample(metrics, 'ce_broker_limit_hits_total', { limit: 'shared_groups' }), 1)
})

async function collectN (client: MqttClient, n: number): Promise<string[]> {
  const got: string[] = []
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`${got.length} of ${n} messages`)) }, 5_000)
    client.on('message', (_topic, payload) => {
      got.push(payload.toString())
      if (got.length === n) {
        clearTimeout(timer)
        resolve()
      }
    })
  })
  return got
}
