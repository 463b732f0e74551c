import assert from 'node:assert/strict'
import { once } from 'node:events'
import { connect as netConnect, type Socket } from 'node:net'
import { test, type TestContext } from 'node:test'
import mqtt from 'mqtt'
import { connect, httpUrl, mqttUrl, sample, startBroker, subscribeGranted } from '../helpers/broker.js'
import { defer } from '../helpers/cleanup.js'
import { rawConnect } from '../helpers/raw.js'
import { addressKey } from '../../src/index.js'
import { WebSocket } from 'ws'

type Broker = Awaited<ReturnType<typeof startBroker>>

async function limitHits (broker: Broker, limit: string): Promise<number | undefined> {
  return sample(await broker.metrics.metrics(), 'ce_broker_limit_hits_total', { limit })
}

/** `limitHits` once it reaches `n` (a client's refusal may reach it just after the client hears of it); a bounded poll. */
async function limitHitsReach (broker: Broker, limit: string, n: number): Promise<number | undefined> {
  for (let i = 0; i < 100 && ((await limitHits(broker, limit)) ?? 0) < n; i++) await new Promise((resolve) => setTimeout(resolve, 20))
  return await limitHits(broker, limit)
}

/** Open a TCP socket; resolves whether the broker kept it (it answers a CONNECT) or closed it at once. */
async function tryConnect (t: TestContext, port: number, clientId: string): Promise<'kept' | 'closed'> {
  const client = await rawConnect(t, port)
  client.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId, keepalive: 0 })
  const reply = await client.next()
  return reply?.cmd === 'connack' ? 'kept' : 'closed'
}

test('limits.maxConnections: past it a new socket is closed before a byte is read, and counted', async (t) => {
  const broker = await startBroker(t, { limits: { maxConnections: 2 } })
  assert.equal(await tryConnect(t, broker.ports.mqtt, 'one'), 'kept')
  assert.equal(await tryConnect(t, broker.ports.mqtt, 'two'), 'kept')
  assert.equal(await tryConnect(t, broker.ports.mqtt, 'three'), 'closed')
  assert.equal(await limitHits(broker, 'connections'), 1)
})

test('limits.connectionsPerSecondPerAddress: a burst within the bucket is let in, a flood beyond it is closed', async (t) => {
  const broker = await startBroker(t, { limits: { connectionsPerSecondPerAddress: 3 } })
  const results = await Promise.all(Array.from({ length: 20 }, async (_, i) => await tryConnect(t, broker.ports.mqtt, `c${i}`)))
  const kept = results.filter((r) => r === 'kept').length
  // the first 3 fit the bucket; it refills 3 a second, so 20 opened together cannot all get in
  // unless accepting them took over 5 s
  assert.ok(kept >= 3 && kept < 20, `kept ${kept} of 20`)
  assert.equal(await limitHits(broker, 'connection_rate'), 20 - kept)
})

test('limits.maxTopicBytes and maxTopicLevels: a publish beyond them disconnects the client; a subscription gets SUBACK 0x80', async (t) => {
  const broker = await startBroker(t, { limits: { maxTopicBytes: 64, maxTopicLevels: 4 } })
  const url = mqttUrl(broker)
  const subscriber = await connect(t, url)
  assert.deepEqual(await subscribeGranted(subscriber, [`long/${'x'.repeat(80)}`, 'a/b/c/d/e', 'a/b/c/d'], 0), [128, 128, 0])
  assert.equal(subscriber.connected, true)

  for (const [topic, limit] of [[`long/${'ñ'.repeat(40)}`, 'topic_bytes'], ['a/b/c/d/e', 'topic_levels']] as const) {
    const publisher = await connect(t, url)
    const closed = new Promise<void>((resolve) => { publisher.once('close', () => { resolve() }) })
    publisher.publish(topic, 'x', { qos: 1 })
    await closed
    assert.equal(await limitHitsReach(broker, limit, 2), 2, `${limit}: the refused subscription and the publish`)
  }
})

test('limits.maxSubscriptionsPerClient: past it SUBACK 0x80; subscribing again to a held filter is not a new one', async (t) => {
  const broker = await startBroker(t, { limits: { maxSubscriptionsPerClient: 2 } })
  const client = await connect(t, mqttUrl(broker))
  assert.deepEqual(await subscribeGranted(client, ['a/#', 'b/#'], 1), [1, 1])
  assert.deepEqual(await subscribeGranted(client, ['c/#'], 1), [128])
  assert.deepEqual(await subscribeGranted(client, ['a/#'], 0), [0], 'a held filter, its QoS changed')
  await client.unsubscribeAsync('b/#')
  assert.deepEqual(await subscribeGranted(client, ['c/#'], 1), [1])
  assert.equal(await limitHits(broker, 'subscriptions'), 1)
})

test('limits.maxKeepaliveSeconds: a longer keepalive, or none, is refused with CONNACK 6', async (t) => {
  const broker = await startBroker(t, { limits: { maxKeepaliveSeconds: 60 } })
  await connect(t, mqttUrl(broker), { keepalive: 30 })
  for (const keepalive of [120, 0]) {
    const code = await mqtt.connectAsync(mqttUrl(broker), { keepalive, reconnectPeriod: 0, connectTimeout: 5_000 })
      .then(async (c) => { await c.endAsync(true); return 0 }, (err: unknown) => typeof err === 'object' && err !== null && 'code' in err ? Number(err.code) : -1)
    assert.equal(code, 6, `keepalive ${keepalive}`)
  }
  assert.equal(await limitHitsReach(broker, 'keepalive', 2), 2)
})

test('limits.drainTimeoutMs: a subscriber that stops reading is disconnected, and the publisher goes on', async (t) => {
  const broker = await startBroker(t, { limits: { drainTimeoutMs: 300 } })
  // a raw subscriber that subscribes, then never reads again
  const stuck = await rawConnect(t, broker.ports.mqtt)
  stuck.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'never-reads', keepalive: 0 })
  assert.equal((await stuck.next())?.cmd, 'connack')
  stuck.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'flood/#', qos: 0 }] })
  assert.equal((await stuck.next())?.cmd, 'suback')
  // a paused socket reads nothing, so it would not notice its own close: the broker's count tells
  stuck.socket.pause()

  const publisher = await connect(t, mqttUrl(broker))
  const chunk = Buffer.alloc(64 * 1024, 0x61)
  // each 64 KiB message is over the socket's high-water mark: the broker soon waits for a drain that never comes
  for (let i = 0; i < 2000 && (await limitHits(broker, 'drain_timeout')) === undefined; i++) {
    await publisher.publishAsync('flood/x', chunk, { qos: 1 })
  }
  assert.equal(await limitHitsReach(broker, 'drain_timeout', 1), 1)
  assert.equal(publisher.connected, true)
  const other = await connect(t, mqttUrl(broker))
  assert.equal(other.connected, true, 'the broker still takes clients')
})

test('a socket that sends nothing after connecting is closed by the connect timeout, and holds no admission slot', async (t) => {
  const broker = await startBroker(t, { limits: { maxConnections: 1 } })
  const idle: Socket = netConnect(broker.ports.mqtt, '127.0.0.1')
  defer(t, () => { idle.destroy() })
  await once(idle, 'connect')
  idle.destroy()
  await once(idle, 'close')
  // the slot is free again once the broker sees the close
  let kept: 'kept' | 'closed' = 'closed'
  for (let i = 0; i < 50 && kept === 'closed'; i++) {
    kept = await tryConnect(t, broker.ports.mqtt, `retry-${i}`)
    if (kept === 'closed') await new Promise((resolve) => setTimeout(resolve, 20))
  }
  assert.equal(kept, 'kept')
})

test('a WebSocket message over the payload limit and its framing headroom is closed with 1009, and counted', async (t) => {
  const broker = await startBroker(t, { limits: { maxPayloadBytes: 1024 } })
  const ws = new WebSocket(`ws://127.0.0.1:${broker.ports.http}/mqtt`, 'mqtt')
  defer(t, () => { ws.terminate() })
  await once(ws, 'open')
  const closed = once(ws, 'close')
  // 64 KiB of headroom for the topic and header, then the payload limit: this is past both
  ws.send(Buffer.alloc(1024 + 64 * 1024 + 1024))
  const [code] = await closed as [number]
  assert.equal(code, 1009)
  assert.equal(await limitHitsReach(broker, 'ws_message', 1), 1)
})

test('limits.maxSubscriptionsPerClient holds within one SUBSCRIBE of many filters, also for a persistent session', async (t) => {
  const broker = await startBroker(t, { limits: { maxSubscriptionsPerClient: 3 } })
  const client = await connect(t, mqttUrl(broker), { clientId: 'many-filters', clean: false })
  const granted = await subscribeGranted(client, Array.from({ length: 10 }, (_, i) => `f/${i}`), 1)
  assert.deepEqual(granted, [1, 1, 1, 128, 128, 128, 128, 128, 128, 128])
})

test('limits.maxConnectionsPerAddress: past it a new socket from that address is closed at once', async (t) => {
  const broker = await startBroker(t, { limits: { maxConnectionsPerAddress: 2 } })
  assert.equal(await tryConnect(t, broker.ports.mqtt, 'a1'), 'kept')
  assert.equal(await tryConnect(t, broker.ports.mqtt, 'a2'), 'kept')
  assert.equal(await tryConnect(t, broker.ports.mqtt, 'a3'), 'closed')
  assert.equal(await limitHits(broker, 'connections_per_address'), 1)
})

test('addresses are limited as IPv4, IPv4 mapped into IPv6, or an IPv6 /64', () => {
  assert.equal(addressKey('10.0.0.7'), '10.0.0.7')
  assert.equal(addressKey('::ffff:10.0.0.7'), '10.0.0.7')
  assert.equal(addressKey('2001:db8:0:1:aaaa::1'), '2001:db8:0:1::/64')
  assert.equal(addressKey('2001:db8:0:1:bbbb:cccc:dddd:eeee'), '2001:db8:0:1::/64')
  assert.equal(addressKey('2001:db8::1'), '2001:db8:0:0::/64')
  assert.equal(addressKey('::1'), '0:0:0:0::/64')
})

test('an HTTP publish to a topic over limits.maxTopicBytes is a 400 bad_request naming the limit', async (t) => {
  const broker = await startBroker(t, { limits: { maxTopicBytes: 64 } })
  const res = await fetch(httpUrl(broker, '/api/mqtt/publish'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ topic: `long/${'x'.repeat(80)}`, payload: 'x' }) })
  const body = await res.json() as { error: { code: string, message: string } }
  assert.equal(res.status, 400)
  assert.equal(body.error.code, 'bad_request')
  assert.match(body.error.message, /over limits\.maxTopicBytes \(64\)/)
})

test('limits.publishRatePerClient: a client over it waits for its turn, nothing of it is dropped, and another client is not held up', async (t) => {
  const broker = await startBroker(t, { validation: { rules: [] }, limits: { publishRatePerClient: 20, publishBurstPerClient: 5 } })
  const subscriber = await connect(t, mqttUrl(broker))
  await subscribeGranted(subscriber, ['rate/#'], 1)
  const arrived: string[] = []
  subscriber.on('message', (topic, payload) => { arrived.push(`${topic} ${payload.toString()}`) })
  const flooder = await connect(t, mqttUrl(broker), { clientId: 'flooder' })
  const other = await connect(t, mqttUrl(broker), { clientId: 'other' })
  // 40 at once: 5 go at once, the other 35 wait for tokens at 20 a second
  const flood = Promise.all(Array.from({ length: 40 }, async (_, i) => await flooder.publishAsync('rate/flood', String(i), { qos: 1 })))
  await other.publishAsync('rate/other', 'hello', { qos: 1 })
  await flood
  for (let i = 0; i < 200 && arrived.length < 41; i++) await new Promise((resolve) => setTimeout(resolve, 10))
  const flooded = arrived.filter((line) => line.startsWith('rate/flood')).map((line) => Number(line.split(' ')[1]))
  assert.deepEqual(flooded, Array.from({ length: 40 }, (_, i) => i), 'every publish arrives, in order')
  assert.ok(arrived.indexOf('rate/other hello') < arrived.indexOf('rate/flood 39'), `the other client's publish did not wait for the flood: ${arrived.join(', ')}`)
  assert.ok(((await limitHits(broker, 'publish_rate')) ?? 0) >= 30, 'the waits are counted')
})
