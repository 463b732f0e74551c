import assert from 'node:assert/strict'
import { test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Broker } from '../../src/index.js'
import { connect, connectedOnBroker, httpUrl, mqttUrl, sample, startBroker, subscribeGranted } from '../helpers/broker.js'

async function until (ok: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const started = Date.now()
  while (!ok()) {
    if (Date.now() - started > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`)
    await sleep(10)
  }
}

test('limits.maxSharedGroups holds for several new groups in one SUBSCRIBE (admits is checked before any of them joins)', async (t) => {
  const broker = await startBroker(t, { limits: { maxSharedGroups: 1 } })
  const client = await connect(t, mqttUrl(broker))
  const granted = await subscribeGranted(client, ['$share/g1/x/#', '$share/g2/x/#', '$share/g3/x/#', '$share/g4/x/#'], 1)
  const metrics = await (await fetch(httpUrl(broker, '/metrics'))).text()
  const groups = ['g1', 'g2', 'g3', 'g4'].filter((group) => sample(metrics, 'ce_broker_shared_members', { group }) !== undefined)
  assert.deepEqual(granted.filter((code) => code !== 128).length, 1, `granted ${JSON.stringify(granted)} with maxSharedGroups 1; groups on the node: ${groups.join(', ')}`)
})

test('limits.maxSharedGroups holds for new groups subscribed at once by several clients', async (t) => {
  const broker = await startBroker(t, { limits: { maxSharedGroups: 1 } })
  const clients = await Promise.all(Array.from({ length: 4 }, async () => await connect(t, mqttUrl(broker))))
  const granted = await Promise.all(clients.map(async (client, i) => (await subscribeGranted(client, [`$share/c${i}/x/#`], 1))[0]))
  assert.equal(granted.filter((code) => code !== 128).length, 1, `granted ${JSON.stringify(granted)} with maxSharedGroups 1`)
})

test('a group whose last member unsubscribed, then left with an unacknowledged message, keeps no metric series (the group label stays bounded)', async (t) => {
  const broker = await startBroker(t)
  const publisher = await connect(t, mqttUrl(broker))
  const member = await connect(t, mqttUrl(broker), { clientId: 'leaky' })
  // receives, never acknowledges (mqtt.js sends the PUBACK once handleMessage calls back)
  member.handleMessage = () => {}
  let got = 0
  member.on('packetreceive', (packet) => { if (packet.cmd === 'publish') got++ })
  await member.subscribeAsync('$share/gone-group/t/#', { qos: 1 })
  await publisher.publishAsync('t/1', '1', { qos: 1 })
  await until(() => got === 1, 'the member got the message')
  // mqtt.js reads nothing more while handleMessage holds a message: the UNSUBACK is not waited for, the broker's side is
  member.unsubscribe('$share/gone-group/t/#')
  await until(() => !subscribed(broker, 'leaky', '$share/gone-group/t/#'), 'the broker took the UNSUBSCRIBE')
  member.stream.destroy()
  await until(() => !connectedOnBroker(broker, 'leaky'), 'the member left')
  await sleep(100)
  const metrics = await (await fetch(httpUrl(broker, '/metrics'))).text()
  const kept = ['ce_broker_shared_delivered_total', 'ce_broker_shared_handovers_total', 'ce_broker_shared_unrouted_total', 'ce_broker_shared_members']
    .filter((name) => sample(metrics, name, { group: 'gone-group' }) !== undefined)
  assert.deepEqual(kept, [], 'series of a group with no member left on the node')
})

function subscribed (broker: Broker, clientId: string, filter: string): boolean {
  const clients: unknown = Reflect.get(broker.aedes, 'clients')
  const client: unknown = typeof clients === 'object' && clients !== null ? Reflect.get(clients, clientId) : undefined
  const subs: unknown = typeof client === 'object' && client !== null ? Reflect.get(client, 'subscriptions') : undefined
  return typeof subs === 'object' && subs !== null && filter in subs
}
