import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import mqtt, { type MqttClient } from 'mqtt'
import { defer } from '../helpers/cleanup.js'
import { collectMessages, connect, connectedOnBroker, connectionOf, mqttUrl, sample, startBroker, type Received } from '../helpers/broker.js'
import { rawConnect, type RawClient } from '../helpers/raw.js'
import { slowEpisode } from '../../src/core/transport/outbound.js'

type Broker = Awaited<ReturnType<typeof startBroker>>

const KIB = 1024
/** Flood messages of this size: 2,000 of them, 32 MiB, far beyond what the kernel's socket buffers of one connection absorb. */
const FLOOD_BYTES = 16 * KIB
const FLOOD_COUNT = 2_000
const CANARIES = 20

/**
 * A raw MQTT client that subscribes and then never reads its socket again: the broker's
 * writes to it fill the kernel buffers, then its own.
 */
async function nonReader (t: TestContext, broker: Broker, clientId: string, qos: 0 | 1, clean = true): Promise<RawClient> {
  const raw = await rawConnect(t, broker.ports.mqtt)
  raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean, clientId, keepalive: 0 })
  assert.equal((await raw.next())?.cmd, 'connack')
  raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'flood/#', qos }] })
  assert.equal((await raw.next())?.cmd, 'suback')
  raw.socket.pause()
  return raw
}


async function metric (broker: Broker, name: string, labels: Record<string, string>): Promise<number> {
  return sample(await broker.metrics.metrics(), name, labels) ?? 0
}

test('a subscriber that stops reading stalls nobody: canaries reach TCP and WebSocket subscribers at QoS 0 and 1 while it is still connected', async (t) => {
  // drainTimeoutMs far beyond the test: without the per-client bound nothing would free the broker in time
  const broker = await startBroker(t, { limits: { drainTimeoutMs: 600_000, maxQueuedMessages: 200, maxQueuedBytes: 1024 * KIB } })
  const url = mqttUrl(broker)
  const wsUrl = `ws://127.0.0.1:${broker.ports.http}/mqtt`
  const stuck = await nonReader(t, broker, 'never-reads', 0)

  const watchers: Array<{ name: string, client: MqttClient }> = []
  for (const [name, target, qos] of [['tcp-qos0', url, 0], ['tcp-qos1', url, 1], ['ws-qos0', wsUrl, 0], ['ws-qos1', wsUrl, 1]] as const) {
    const client = await connect(t, target, { clientId: `canary-${name}` })
    await client.subscribeAsync('canary/#', { qos })
    watchers.push({ name, client })
  }
  const arrivals = watchers.map(({ client }) => collectMessages(client, CANARIES, 60_000))
  let openWhenLastArrived = true
  const lastArrival = Promise.all(arrivals).then((all) => { openWhenLastArrived = connectedOnBroker(broker, 'never-reads'); return all })

  const publisher = await connect(t, url, { clientId: 'flooder' })
  const canary = await connect(t, url, { clientId: 'canary-publisher' })
  const chunk = Buffer.alloc(FLOOD_BYTES, 0x61)
  for (let i = 0; i < FLOOD_COUNT; i++) {
    publisher.publish(`flood/${i % 10}`, chunk, { qos: 0 })
    if (i % (FLOOD_COUNT / CANARIES) === FLOOD_COUNT / CANARIES - 1) {
      // each canary is published after its share of the flood, so the last one goes out once it all has
      await publisher.publishAsync('flood/sync', 'x', { qos: 1 })
      await canary.publishAsync(`canary/${(i + 1) / (FLOOD_COUNT / CANARIES) - 1}`, 'tweet', { qos: 1 })
    }
  }

  const received: Received[][] = await lastArrival
  for (const [i, messages] of received.entries()) {
    assert.deepEqual(messages.map((m) => m.topic), Array.from({ length: CANARIES }, (_, n) => `canary/${n}`), `${watchers[i]?.name ?? ''} got every canary, in order`)
  }
  assert.equal(openWhenLastArrived, true, 'the non-reader was still connected when the last canary arrived')
  stuck.socket.resume()
  assert.ok(await metric(broker, 'ce_broker_dropped_total', { reason: 'slow_consumer' }) > 0, 'its dropped QoS 0 messages are counted')
  assert.ok(await metric(broker, 'ce_broker_limit_hits_total', { limit: 'slow_consumer' }) >= 1, 'it was found slow, and that is counted')
  assert.ok(await metric(broker, 'ce_broker_limit_hits_total', { limit: 'queued_bytes' }) + await metric(broker, 'ce_broker_limit_hits_total', { limit: 'queued_messages' }) > 0)
})

test('QoS 1 beyond the bound: a clean-session subscriber is disconnected; a persistent one keeps everything in its session and gets it on reconnect', async (t) => {
  const broker = await startBroker(t, { limits: { drainTimeoutMs: 600_000, maxQueuedMessages: 50, maxQueuedBytes: 512 * KIB } })
  const url = mqttUrl(broker)
  const clean = await nonReader(t, broker, 'clean-non-reader', 1, true)
  const persistent = await nonReader(t, broker, 'persistent-non-reader', 1, false)
  // found by review: a QoS 0 subscription gets QoS 1 traffic at QoS 0, and was disconnected for it as if it were QoS 1
  await nonReader(t, broker, 'qos0-subscription-non-reader', 0, true)
  const cleanClosed = new Promise<void>((resolve) => { clean.socket.once('close', () => { resolve() }) })

  const publisher = await connect(t, url, { clientId: 'qos1-flooder' })
  const count = 600
  const chunk = Buffer.alloc(32 * KIB, 0x62)
  await Promise.all(Array.from({ length: count }, async (_, i) => {
    await publisher.publishAsync('flood/qos1', Buffer.concat([Buffer.from(`${String(i).padStart(4, '0')}:`), chunk]), { qos: 1 })
  }))

  // a paused socket does not see its end: read again to see the broker closed it
  clean.socket.resume()
  await cleanClosed
  assert.equal(connectedOnBroker(broker, 'persistent-non-reader'), true, 'the persistent session stays connected')
  assert.equal(connectedOnBroker(broker, 'qos0-subscription-non-reader'), true, 'a QoS 0 subscription loses messages, not its connection')
  assert.ok(await metric(broker, 'ce_broker_dropped_total', { reason: 'slow_consumer' }) >= 1)

  // the persistent subscriber comes back: every message is in its session
  persistent.socket.destroy()
  // listening before CONNACK: the session's messages follow it at once
  const back = mqtt.connect(url, { clientId: 'persistent-non-reader', clean: false, reconnectPeriod: 0 })
  defer(t, () => back.endAsync(true))
  const indices = new Set<number>()
  const all = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`${indices.size} of ${count} messages came back`)) }, 60_000)
    function onMessage (_topic: string, payload: Buffer): void {
      // the ones written before the socket stopped being read come again (never acked), marked dup
      indices.add(Number(payload.subarray(0, 4).toString()))
      if (indices.size < count) return
      clearTimeout(timer)
      resolve()
    }
    back.on('message', onMessage)
  })
  await all
  assert.equal(indices.size, count, 'each of the 600 messages arrived')
})

test('retained messages sent on SUBSCRIBE wait for the subscriber, however slow: none is dropped or held', async (t) => {
  // found by review: they went through the bounded queue and were "held" in a session that
  // never stored them, lost for good; they come from the client's own stream, not the emitter
  const broker = await startBroker(t, { limits: { slowConsumerMs: 20, maxQueuedMessages: 10, maxQueuedBytes: 64 * KIB } })
  const publisher = await connect(t, mqttUrl(broker), { clientId: 'retainer' })
  const count = 400
  const chunk = Buffer.alloc(16 * KIB, 0x63)
  for (let i = 0; i < count; i++) await publisher.publishAsync(`kept/${i}`, chunk, { qos: 1, retain: true })

  const raw = await rawConnect(t, broker.ports.mqtt)
  raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: false, clientId: 'late-reader', keepalive: 0 })
  assert.equal((await raw.next())?.cmd, 'connack')
  // stop reading before the retained messages come: 6.4 MB back up into the broker
  raw.socket.pause()
  raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'kept/#', qos: 1 }] })
  await backedUp(broker, 'late-reader')
  raw.socket.resume()
  const topics = new Set<string>()
  while (topics.size < count) {
    const packet = await raw.next(30_000)
    if (packet === null) break
    if (packet.cmd !== 'publish') continue
    topics.add(packet.topic)
    if (packet.messageId !== undefined) raw.send({ cmd: 'puback', messageId: packet.messageId })
  }
  assert.equal(topics.size, count, 'every retained message arrived')
  assert.equal(await metric(broker, 'ce_broker_dropped_total', { reason: 'slow_consumer' }), 0)
})

/** Resolves once the broker's writes to `clientId` wait for a drain, and a few of the slow-consumer clock's ticks have passed. */
async function backedUp (broker: Broker, clientId: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const conn = connectionOf(broker, clientId)
    if (conn !== undefined && Reflect.get(conn, 'writableNeedDrain') === true) break
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  // an ordering aid, not an assertion: with slowConsumerMs 20 the clock has ticked ten times
  await new Promise((resolve) => setTimeout(resolve, 200))
}

test('a reader that stops and starts in cycles stays slow twice as long each time, at most a minute, and is forgiven after ten calm minutes', () => {
  // found by review: it was waited for again each time it caught up, a stall of slowConsumerMs per cycle
  let state = { episodes: 0, until: 0 }
  let last = Number.NEGATIVE_INFINITY
  const untils: number[] = []
  for (let now = 0; untils.length < 9; now += 1_000) {
    state = slowEpisode(state.episodes, last, now, 500)
    last = now
    untils.push(state.until - now)
  }
  assert.deepEqual(untils, [500, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000])
  assert.deepEqual(slowEpisode(9, 0, 10 * 60_000 + 1, 500), { episodes: 1, until: 10 * 60_000 + 501 })
})
