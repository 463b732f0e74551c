import { defer } from '../helpers/cleanup.js'
import assert from 'node:assert/strict'
import { test } from 'node:test'
import mqtt from 'mqtt'
import { closed, collectMessages, connect, mqttUrl, nextMessage, sample, startBroker } from '../helpers/broker.js'
import { rawConnect } from '../helpers/raw.js'

test('QoS 0, 1 and 2 messages reach a subscriber over TCP with the granted QoS', async (t) => {
  const broker = await startBroker(t)
  const subscriber = await connect(t, mqttUrl(broker))
  const publisher = await connect(t, mqttUrl(broker))
  const granted = await subscriber.subscribeAsync('hostel/#', { qos: 2 })
  assert.deepEqual(granted.map((g) => g.qos), [2])

  const arriving = collectMessages(subscriber, 3)
  for (const qos of [0, 1, 2] as const) {
    await publisher.publishAsync(`hostel/qos${qos}`, `message at qos ${qos}`, { qos })
  }
  const messages = await arriving
  assert.deepEqual(
    messages.map((m) => [m.topic, m.payload.toString(), m.qos]).sort(),
    [['hostel/qos0', 'message at qos 0', 0], ['hostel/qos1', 'message at qos 1', 1], ['hostel/qos2', 'message at qos 2', 2]]
  )
})

test('a subscription at QoS 1 receives a QoS 2 publish downgraded to QoS 1', async (t) => {
  const broker = await startBroker(t)
  const subscriber = await connect(t, mqttUrl(broker))
  const publisher = await connect(t, mqttUrl(broker))
  await subscriber.subscribeAsync('beds/status', { qos: 1 })
  const arriving = nextMessage(subscriber, 'beds/status')
  await publisher.publishAsync('beds/status', 'free', { qos: 2 })
  assert.equal((await arriving).qos, 1)
})

test('a retained message is delivered to later subscribers with the retain flag, and an empty one clears it', async (t) => {
  const broker = await startBroker(t)
  const publisher = await connect(t, mqttUrl(broker))
  await publisher.publishAsync('hostel/status', 'open', { qos: 1, retain: true })

  const late = await connect(t, mqttUrl(broker))
  const arriving = nextMessage(late, 'hostel/status')
  await late.subscribeAsync('hostel/status', { qos: 1 })
  const retained = await arriving
  assert.equal(retained.payload.toString(), 'open')
  assert.equal(retained.retain, true)

  await publisher.publishAsync('hostel/status', '', { qos: 1, retain: true })
  const later = await connect(t, mqttUrl(broker))
  await later.subscribeAsync('hostel/status', { qos: 1 })
  // a probe published after the subscription proves that nothing retained came first
  const first = nextMessage(later)
  await publisher.publishAsync('hostel/status', 'probe', { qos: 1 })
  assert.equal((await first).payload.toString(), 'probe')
})

test('the last will is published when a client drops without DISCONNECT', async (t) => {
  const broker = await startBroker(t)
  const watcher = await connect(t, mqttUrl(broker))
  await watcher.subscribeAsync('services/+/status', { qos: 1 })
  const dying = await connect(t, mqttUrl(broker), {
    clientId: 'booking-service',
    will: { topic: 'services/booking-service/status', payload: Buffer.from('offline'), qos: 1, retain: false }
  })
  const will = nextMessage(watcher, 'services/booking-service/status')
  dying.stream.destroy()
  assert.equal((await will).payload.toString(), 'offline')
})

test('the last will is not published after a clean DISCONNECT', async (t) => {
  const broker = await startBroker(t)
  const watcher = await connect(t, mqttUrl(broker))
  await watcher.subscribeAsync('services/#', { qos: 1 })
  const leaving = await connect(t, mqttUrl(broker), {
    clientId: 'payment-service',
    will: { topic: 'services/payment-service/status', payload: Buffer.from('offline'), qos: 1, retain: false }
  })
  const first = nextMessage(watcher)
  await leaving.endAsync()
  // a probe after the disconnect arrives first only if no will was sent
  const probe = await connect(t, mqttUrl(broker))
  await probe.publishAsync('services/probe', 'after', { qos: 1 })
  assert.equal((await first).topic, 'services/probe')
})

test('a persistent session keeps its subscription and queues QoS 1 messages while offline', async (t) => {
  const broker = await startBroker(t)
  const options = { clientId: 'notification-service', clean: false } as const
  const first = await connect(t, mqttUrl(broker), options)
  await first.subscribeAsync('hostel/v1/booking/#', { qos: 1 })
  await first.endAsync()

  const publisher = await connect(t, mqttUrl(broker))
  for (const n of [1, 2, 3]) await publisher.publishAsync('hostel/v1/booking/confirmed', `booking ${n}`, { qos: 1 })

  // listen before CONNECT: the queued messages follow the CONNACK at once
  const back = mqtt.connect(mqttUrl(broker), { ...options, reconnectPeriod: 0, manualConnect: true })
  defer(t, () => back.endAsync(true))
  const arriving = collectMessages(back, 3)
  back.connect()
  const messages = await arriving
  assert.deepEqual(messages.map((m) => m.payload.toString()), ['booking 1', 'booking 2', 'booking 3'])
  assert.ok(messages.every((m) => m.qos === 1))
})

test('CONNACK reports a present session to a returning persistent client', async (t) => {
  const broker = await startBroker(t)
  const raw = await rawConnect(t, broker.ports.mqtt)
  raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'pilgrim-registry', clean: false, keepalive: 30 })
  assert.deepEqual(pick(await raw.next()), { cmd: 'connack', returnCode: 0, sessionPresent: false })
  raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'a/b', qos: 1 }] })
  assert.equal((await raw.next())?.cmd, 'suback')
  raw.send({ cmd: 'disconnect' })
  assert.equal(await raw.next(), null)

  const again = await rawConnect(t, broker.ports.mqtt)
  again.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'pilgrim-registry', clean: false, keepalive: 30 })
  assert.deepEqual(pick(await again.next()), { cmd: 'connack', returnCode: 0, sessionPresent: true })
})

test('MQTT-3.1.3-8: an empty client id with CleanSession=0 gets CONNACK 2 and is disconnected', async (t) => {
  const broker = await startBroker(t)
  const raw = await rawConnect(t, broker.ports.mqtt)
  // mqtt-packet will not even encode this CONNECT, so here it is by hand:
  // fixed header, remaining length 12, "MQTT", level 4, flags 0 (CleanSession=0), keepalive 30, client id of length 0
  raw.sendBytes(Buffer.from([0x10, 12, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x00, 0, 30, 0, 0]))
  assert.deepEqual(pick(await raw.next()), { cmd: 'connack', returnCode: 2, sessionPresent: false })
  assert.equal(await raw.next(), null, 'the broker closes the connection after CONNACK 2')
})

test('an empty client id with CleanSession=1 is accepted and can publish and subscribe', async (t) => {
  const broker = await startBroker(t)
  const anonymous = await connect(t, mqttUrl(broker), { clientId: '', clean: true })
  await anonymous.subscribeAsync('ping', { qos: 1 })
  const arriving = nextMessage(anonymous, 'ping')
  await anonymous.publishAsync('ping', 'pong', { qos: 1 })
  assert.equal((await arriving).payload.toString(), 'pong')
})

test('publishing to a $ topic is acked, reaches nobody, is told on $rejections and counted; the client stays connected (Paho test_dollar_topics)', async (t) => {
  const broker = await startBroker(t)
  const watcher = await connect(t, mqttUrl(broker))
  await watcher.subscribeAsync(['$DLQ/#', '$audit/x', '$TopicA/B', '$SYS/fake', 'after'], { qos: 1 })
  const first = nextMessage(watcher)

  const topics = ['$TopicA/B', '$DLQ/hostel/v1/booking/reserved', '$audit/x', '$SYS/fake']
  const intruder = await connect(t, mqttUrl(broker), { clientId: 'intruder' })
  await intruder.subscribeAsync('$rejections/intruder', { qos: 1 })
  const told = collectMessages(intruder, topics.length)
  for (const topic of topics) await intruder.publishAsync(topic, 'forged', { qos: 1 })
  const records = (await told).map((m) => JSON.parse(m.payload.toString()) as { data: { reason: string, topic: string } })
  assert.deepEqual(records.map((r) => [r.data.reason, r.data.topic]), topics.map((topic) => ['not_authorized', topic]))
  assert.equal(intruder.connected, true)

  const probe = await connect(t, mqttUrl(broker))
  await probe.publishAsync('after', 'probe', { qos: 1 })
  assert.equal((await first).topic, 'after', 'no forged message reached the watcher before the probe')
  assert.equal(sample(await broker.metrics.metrics(), 'ce_broker_events_total', { outcome: 'rejected', reason: 'not_authorized' }), topics.length)
})

test('a client taking over a client id closes the older connection', async (t) => {
  const broker = await startBroker(t)
  const older = await connect(t, mqttUrl(broker), { clientId: 'gov-submitter' })
  const olderClosed = closed(older)
  const newer = await connect(t, mqttUrl(broker), { clientId: 'gov-submitter' })
  await olderClosed
  assert.equal(newer.connected, true)
})

test('two brokers in one process keep their clients, messages and metrics apart', async (t) => {
  const a = await startBroker(t, { nodeId: 'node-a' })
  const b = await startBroker(t, { nodeId: 'node-b' })
  const onA = await connect(t, mqttUrl(a))
  const onB = await connect(t, mqttUrl(b))
  await onA.subscribeAsync('shared/topic', { qos: 1 })
  await onB.subscribeAsync('shared/topic', { qos: 1 })

  const atA = nextMessage(onA, 'shared/topic')
  const firstAtB = nextMessage(onB)
  const publisherA = await connect(t, mqttUrl(a))
  await publisherA.publishAsync('shared/topic', 'for a', { qos: 1 })
  assert.equal((await atA).payload.toString(), 'for a')

  const publisherB = await connect(t, mqttUrl(b))
  await publisherB.publishAsync('shared/topic', 'for b', { qos: 1 })
  assert.equal((await firstAtB).payload.toString(), 'for b', 'b never saw the message published on a')

  assert.notEqual(a.metrics, b.metrics)
  const received = async (broker: typeof a): Promise<number | undefined> =>
    (await broker.metrics.getSingleMetric('ce_broker_publishes_received_total')?.get())?.values.find((v) => v.labels.transport === 'tcp')?.value
  assert.equal(await received(a), 1)
  assert.equal(await received(b), 1)
})

function pick (packet: unknown): unknown {
  if (typeof packet !== 'object' || packet === null) return packet
  const { cmd, returnCode, sessionPresent } = packet as { cmd?: unknown, returnCode?: unknown, sessionPresent?: unknown }
  return { cmd, returnCode, sessionPresent }
}
