import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import mqtt, { type MqttClient } from 'mqtt'
import { connect, nextMessage } from '../helpers/broker.js'
import { defer } from '../helpers/cleanup.js'
import { startCli, type CliProcess } from '../helpers/cli.js'
import { rawConnect } from '../helpers/raw.js'
import { redisUnavailable, startRedis } from '../helpers/redis.js'

const skip = redisUnavailable() ?? false
/** Five times what aedes-persistence-redis sends per CONNECT on its own (`maxSessionDelivery`, 1 000). */
const BACKLOG = 5_000
/** Publishes in flight at once. */
const WINDOW = 500

interface Node {
  readonly mqttPort: number
  readonly mqtt: string
  readonly cli: CliProcess
}

async function startNode (t: TestContext, redisUrl: string, id: string): Promise<Node> {
  const cli = startCli(t, ['--mqtt-port', '0', '--http-port', '0', '--node-id', id, '--redis', redisUrl])
  const ready = await cli.waitForLog((line) => line.msg === 'ready', 30_000)
  const mqttPort = Number(ready.mqttPort)
  return { mqttPort, mqtt: `mqtt://127.0.0.1:${mqttPort}`, cli }
}

async function publishNumbered (client: MqttClient, topic: string, count: number): Promise<void> {
  for (let start = 0; start < count; start += WINDOW) {
    const batch: Array<Promise<unknown>> = []
    for (let seq = start; seq < Math.min(start + WINDOW, count); seq++) batch.push(client.publishAsync(topic, String(seq), { qos: 1 }))
    await Promise.all(batch)
  }
}

test('kill -9 of the node a persistent subscriber was on: it reconnects to the other node once and gets all 5 000 queued QoS 1 messages in order, and its queue is empty', { skip }, async (t) => {
  const redis = await startRedis(t)
  const [a, b] = await Promise.all([startNode(t, redis.url, 'node-a'), startNode(t, redis.url, 'node-b')])

  // the subscriber, on A, reads what A sends and acks nothing: every message stays in its session
  const subscriber = await rawConnect(t, a.mqttPort)
  subscriber.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'ledger-service', clean: false, keepalive: 60 })
  assert.equal((await subscriber.next())?.cmd, 'connack')
  subscriber.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'hostel/ledger/#', qos: 1 }] })
  assert.equal((await subscriber.next())?.cmd, 'suback')
  // B learns of the subscription through Redis in order with what A publishes next
  const onB = await connect(t, b.mqtt)
  await onB.subscribeAsync('hostel/probe', { qos: 1 })
  const probed = nextMessage(onB, 'hostel/probe', 10_000)
  const onA = await connect(t, a.mqtt)
  await onA.publishAsync('hostel/probe', 'after the subscription', { qos: 1 })
  await probed

  // acked by B once queued in Redis; A writes them to the subscriber, which acks none
  await publishNumbered(onB, 'hostel/ledger/entry', BACKLOG)
  let first = await subscriber.next(10_000)
  while (first !== null && first.cmd !== 'publish') first = await subscriber.next(10_000)
  assert.equal(first?.cmd, 'publish', 'A was sending the backlog when it died')

  a.cli.child.kill('SIGKILL')
  await a.cli.exited

  const resumed = mqtt.connect(b.mqtt, { clientId: 'ledger-service', clean: false, reconnectPeriod: 0, manualConnect: true })
  defer(t, () => resumed.endAsync(true))
  let connects = 0
  resumed.on('connect', () => { connects++ })
  const seqs: number[] = []
  const all = new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 20_000)
    resumed.on('message', function numbered (_topic, payload) {
      seqs.push(Number(payload.toString()))
      if (seqs.length < BACKLOG) return
      clearTimeout(timer)
      resolve()
    })
  })
  resumed.connect()
  await all
  assert.equal(connects, 1, 'one CONNECT')
  const missing = BACKLOG - new Set(seqs).size
  assert.deepEqual({ received: seqs.length, missing }, { received: BACKLOG, missing: 0 })
  assert.deepEqual(seqs, Array.from({ length: BACKLOG }, (_, i) => i), 'in publish order')

  // every ack took its message out of the session, and the backlog's snapshot is gone
  const direct = new Redis(redis.url)
  defer(t, () => { direct.disconnect() })
  const leftovers = async (): Promise<{ queued: number, snapshots: number }> => ({
    queued: await direct.llen('outgoing:ledger-service'),
    snapshots: (await direct.keys('outgoing-backlog:*')).length
  })
  let left = await leftovers()
  for (let i = 0; i < 100 && (left.queued > 0 || left.snapshots > 0); i++) {
    await sleep(50)
    left = await leftovers()
  }
  assert.deepEqual(left, { queued: 0, snapshots: 0 }, 'acked messages left in the session queue')
})
