import assert from 'node:assert/strict'
import type { Readable } from 'node:stream'
import { test, type TestContext } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { isDeepStrictEqual } from 'node:util'
import { Redis } from 'ioredis'
import mqtt, { type MqttClient } from 'mqtt'
import type { Broker, BrokerInput } from '../../src/index.js'
import { connect, mqttUrl, startBroker } from '../helpers/broker.js'
import { defer } from '../helpers/cleanup.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved } from '../helpers/events.js'
import { redisUnavailable, startRedis } from '../helpers/redis.js'

const skipRedis = redisUnavailable() ?? false
/** Five times what aedes-persistence-redis reads per CONNECT on its own (`maxSessionDelivery`, 1 000). */
const BACKLOG = 5_000
/** Publishes in flight at once: sent together, acked together. */
const WINDOW = 500

/** Publish `count` QoS 1 messages on `topic`, each carrying its sequence number 0, 1, 2 … in order. */
async function publishNumbered (client: MqttClient, topic: string, count: number): Promise<void> {
  for (let start = 0; start < count; start += WINDOW) {
    const batch: Array<Promise<unknown>> = []
    for (let seq = start; seq < Math.min(start + WINDOW, count); seq++) batch.push(client.publishAsync(topic, String(seq), { qos: 1 }))
    await Promise.all(batch)
  }
}

/**
 * Connect `clientId` once more (persistent session, listener on before CONNECT) and
 * collect the sequence numbers it receives until `count` arrived, or `timeoutMs` passed.
 */
async function resumeAndCollect (t: TestContext, url: string, clientId: string, count: number, timeoutMs: number): Promise<number[]> {
  const client = mqtt.connect(url, { clientId, clean: false, reconnectPeriod: 0, manualConnect: true })
  defer(t, () => client.endAsync(true))
  const seqs: number[] = []
  let connects = 0
  client.on('connect', () => { connects++ })
  const events: string[] = []
  client.on('error', (err) => { events.push(`error: ${err.message}`) })
  const done = new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, timeoutMs)
    client.on('close', () => {
      events.push('close')
      clearTimeout(timer)
      resolve()
    })
    client.on('message', function numbered (_topic, payload) {
      seqs.push(Number(payload.toString()))
      if (seqs.length >= count) {
        clearTimeout(timer)
        resolve()
      }
    })
  })
  client.connect()
  await done
  assert.equal(connects, 1, `one CONNECT (client events: ${events.join(', ')})`)
  return seqs
}

/** What a backlog delivery got wrong: missing, duplicated and out-of-order sequence numbers. */
function faults (seqs: readonly number[], count: number): { received: number, missing: number, duplicates: number, outOfOrder: number } {
  const seen = new Set<number>()
  let duplicates = 0
  let outOfOrder = 0
  let last = -1
  for (const seq of seqs) {
    if (seen.has(seq)) duplicates++
    seen.add(seq)
    if (seq < last) outOfOrder++
    last = Math.max(last, seq)
  }
  let missing = 0
  for (let seq = 0; seq < count; seq++) if (!seen.has(seq)) missing++
  return { received: seqs.length, missing, duplicates, outOfOrder }
}

/** Poll `read` (every 50 ms, 5 s at most) until it answers `wanted`; its last answer. */
async function settles<T> (read: () => Promise<T>, wanted: T): Promise<T> {
  let last = await read()
  for (let i = 0; i < 100 && !isDeepStrictEqual(last, wanted); i++) {
    await sleep(50)
    last = await read()
  }
  return last
}

/** What a test reads of a session's store: messages queued, and backlog snapshots left behind. */
interface Leftovers {
  readonly queued: number
  readonly snapshots: number
}
type ReadLeftovers = (broker: Broker, clientId: string) => Promise<Leftovers>

async function backlogDelivered (t: TestContext, input: BrokerInput, leftovers: ReadLeftovers): Promise<void> {
  const broker = await startBroker(t, input)
  const url = mqttUrl(broker)
  const away = await connect(t, url, { clientId: 'archive-service', clean: false })
  await away.subscribeAsync('hostel/backlog/#', { qos: 1 })
  await away.endAsync()

  const publisher = await connect(t, url, { clientId: 'booking-desk' })
  await publishNumbered(publisher, 'hostel/backlog/booking', BACKLOG)

  const seqs = await resumeAndCollect(t, url, 'archive-service', BACKLOG, 20_000)
  assert.deepEqual(faults(seqs, BACKLOG), { received: BACKLOG, missing: 0, duplicates: 0, outOfOrder: 0 })
  assert.deepEqual(seqs, Array.from({ length: BACKLOG }, (_, i) => i), 'in publish order')
  // the client acked each one: none is left to come again on the next CONNECT
  assert.deepEqual(await settles(async () => await leftovers(broker, 'archive-service'), { queued: 0, snapshots: 0 }), { queued: 0, snapshots: 0 })
}

/** Leftovers of the memory persistence, read through its own outgoing stream. */
async function memoryLeftovers (broker: Broker, clientId: string): Promise<Leftovers> {
  let queued = 0
  for await (const _packet of sessionStore(broker).outgoingStream({ id: clientId })) queued++
  return { queued, snapshots: 0 }
}

/** Leftovers in Redis, read directly in the library's format. */
function redisLeftovers (t: TestContext, url: string): ReadLeftovers {
  const direct = new Redis(url)
  defer(t, () => { direct.disconnect() })
  return async (_broker, clientId) => ({
    queued: await direct.llen(`outgoing:${encodeURIComponent(clientId)}`),
    snapshots: (await direct.keys('outgoing-backlog:*')).length
  })
}

test('a persistent session offline for 5 000 QoS 1 messages gets all of them on one CONNECT, in order (memory)', async (t) => {
  await backlogDelivered(t, {}, memoryLeftovers)
})

test('a persistent session offline for 5 000 QoS 1 messages gets all of them on one CONNECT, in order (Redis)', { skip: skipRedis }, async (t) => {
  const redis = await startRedis(t)
  await backlogDelivered(t, { redis: { url: redis.url } }, redisLeftovers(t, redis.url))
})

/** aedes' persistence, which its types leave out: the promise forms of the calls aedes makes. */
interface SessionStore {
  outgoingEnqueueCombi: (subs: ReadonlyArray<{ clientId: string, topic: string, qos: number }>, packet: object) => Promise<void>
  outgoingUpdate: (client: { id: string }, packet: object) => Promise<void>
  outgoingStream: (client: { id: string }) => Readable
}

function sessionStore (broker: Broker): SessionStore {
  const persistence: unknown = Reflect.get(broker.aedes, 'persistence')
  assert.ok(typeof persistence === 'object' && persistence !== null)
  for (const name of ['outgoingEnqueueCombi', 'outgoingUpdate', 'outgoingStream']) assert.equal(typeof Reflect.get(persistence, name), 'function', name)
  return persistence as SessionStore
}

/**
 * Queued messages that were each sent once under packet id 7 and never acked. The
 * Redis persistence keeps one copy of a message for all its subscribers, with the id
 * of whichever connection was sent it last, maybe on a node that is gone: ids that
 * are not this connection's. Sent again as they are, several messages in flight share
 * an id, the ack of one clears another, and acked messages stay queued for the next
 * CONNECT. All of them get through, and each ack empties the queue.
 */
async function acksEmptyTheQueue (t: TestContext, input: BrokerInput, leftovers: ReadLeftovers): Promise<void> {
  const broker = await startBroker(t, input)
  const store = sessionStore(broker)
  const count = 2_500
  const sub = { clientId: 'audit-trail', topic: 'hostel/audit/#', qos: 1 }
  for (let seq = 0; seq < count; seq++) {
    const packet = { cmd: 'publish', topic: 'hostel/audit/booking', payload: Buffer.from(String(seq)), qos: 1, retain: false, dup: false, brokerId: 'node-gone', brokerCounter: seq + 1 }
    await store.outgoingEnqueueCombi([sub], packet)
    await store.outgoingUpdate({ id: sub.clientId }, { ...packet, messageId: 7 })
  }
  const seqs = await resumeAndCollect(t, mqttUrl(broker), sub.clientId, count, 20_000)
  assert.deepEqual(faults(seqs, count), { received: count, missing: 0, duplicates: 0, outOfOrder: 0 })
  assert.deepEqual(await settles(async () => await leftovers(broker, sub.clientId), { queued: 0, snapshots: 0 }), { queued: 0, snapshots: 0 }, 'messages acked but still queued for the session')
}

test('a backlog stored with packet ids of other connections: all of it arrives, and the acks empty the queue (memory)', async (t) => {
  await acksEmptyTheQueue(t, {}, memoryLeftovers)
})

test('a backlog stored with packet ids of other connections: all of it arrives, and the acks empty the queue (Redis)', { skip: skipRedis }, async (t) => {
  const redis = await startRedis(t)
  await acksEmptyTheQueue(t, { redis: { url: redis.url } }, redisLeftovers(t, redis.url))
})

/**
 * [MQTT-4.7.2-1] in the sessions: found when the commit began to route accepted events
 * itself. aedes queued every `$` topic but `$SYS/` for a `#` subscriber's session, which
 * is never sent them: a dead letter's `$DLQ/…` record and a refused copy's `$DISCARD/…`
 * waited there, acked by no one, as long as the session lived.
 */
async function dollarTopicsStayOut (t: TestContext, input: BrokerInput): Promise<void> {
  const broker = await startBroker(t, input)
  const url = mqttUrl(broker)
  const keeper = await connect(t, url, { clientId: 'keeper', clean: false })
  await keeper.subscribeAsync('#', { qos: 1 })
  const seen: string[] = []
  const marker = new Promise<void>((resolve) => {
    keeper.on('message', (topic) => {
      seen.push(topic)
      if (topic === 'ok/marker') resolve()
    })
  })
  const publisher = await connect(t, url, { clientId: 'booking-service' })
  const event = JSON.stringify(bookingReserved())
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, event, { qos: 1 })
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, event, { qos: 1 })
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved({ nights: 0 })), { qos: 1 })
  await publisher.publishAsync('ok/marker', 'marker', { qos: 1 })
  await marker
  assert.deepEqual(seen, [BOOKING_RESERVED_TOPIC, 'ok/marker'], 'the accepted event once, no $ topic')
  // a round trip after the marker: the broker has read every PUBACK sent before it
  await keeper.unsubscribeAsync('ok/none')
  const stream: unknown = Reflect.apply(Reflect.get(Reflect.get(broker.aedes, 'persistence') as object, 'outgoingStream') as () => unknown, Reflect.get(broker.aedes, 'persistence'), [{ id: 'keeper' }])
  assert.ok(stream instanceof Object && Symbol.asyncIterator in stream)
  const leftover: unknown[] = []
  for await (const entry of stream as AsyncIterable<unknown>) leftover.push(Reflect.get(Object(entry), 'topic'))
  assert.deepEqual(leftover, [], 'nothing waits in the session')
}

test('a # session keeps no copy of the $DLQ/, $rejections/ or $DISCARD/ messages it is never sent (memory)', async (t) => {
  await dollarTopicsStayOut(t, {})
})

test('a # session keeps no copy of the $DLQ/, $rejections/ or $DISCARD/ messages it is never sent (Redis)', { skip: skipRedis }, async (t) => {
  const redis = await startRedis(t)
  await dollarTopicsStayOut(t, { redis: { url: redis.url } })
})
