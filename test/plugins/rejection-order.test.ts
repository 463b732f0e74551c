/**
 * A refused publish's record reaches its publisher on `$rejections/<clientId>` before
 * the PUBACK (or the disconnect) that answers it: on MQTT 3.1.1 that is how a publisher
 * learns, when the PUBACK comes, whether its event was accepted (the client library's
 * `publish` relies on it). Read off the wire, packet by packet.
 */
import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import type { Packet } from 'mqtt-packet'
import type { Broker, BrokerInput } from '../../src/index.js'
import { startBroker } from '../helpers/broker.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved, parseRecord } from '../helpers/events.js'
import { rawConnect, type RawClient } from '../helpers/raw.js'
import { redisUnavailable, startRedis } from '../helpers/redis.js'

const CLIENT_ID = 'booking-service'

/** A raw client connected as `CLIENT_ID` to a broker started with `config`, and subscribed to its `$rejections`. */
async function publisher (t: TestContext, config: BrokerInput = {}): Promise<RawClient> {
  return await subscribedTo(t, await startBroker(t, config))
}

/** A raw client connected as `CLIENT_ID` to `broker` and subscribed to its `$rejections`. */
async function subscribedTo (t: TestContext, broker: Broker): Promise<RawClient> {
  const raw = await rawConnect(t, broker.ports.mqtt)
  raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: CLIENT_ID, keepalive: 60 })
  assert.equal((await raw.next())?.cmd, 'connack')
  raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `$rejections/${CLIENT_ID}`, qos: 1 }] })
  assert.equal((await raw.next())?.cmd, 'suback')
  return raw
}

/** Publish `event` at QoS 1 as packet `messageId`; the packets that answer it, up to its PUBACK (the rejection's PUBLISH acked as it comes). */
async function answers (raw: RawClient, event: object, messageId: number): Promise<Packet[]> {
  raw.send({ cmd: 'publish', topic: BOOKING_RESERVED_TOPIC, payload: Buffer.from(JSON.stringify(event)), qos: 1, messageId, retain: false, dup: false })
  const seen: Packet[] = []
  for (;;) {
    const packet = await raw.next()
    if (packet === null) return seen
    seen.push(packet)
    if (packet.cmd === 'publish' && packet.qos === 1 && packet.messageId !== undefined) raw.send({ cmd: 'puback', messageId: packet.messageId })
    if (packet.cmd === 'puback' && packet.messageId === messageId) return seen
  }
}

function rejection (packet: Packet | undefined): { reason: string, id: unknown } {
  assert.equal(packet?.cmd, 'publish')
  assert.equal(packet.topic, `$rejections/${CLIENT_ID}`)
  const record = parseRecord(Buffer.from(packet.payload))
  return { reason: record.data.reason, id: (record.data.payload as { id?: unknown } | undefined)?.id }
}

/** An event accepted, then published again 10 times: each duplicate's record comes before its PUBACK. */
async function duplicatesToldFirst (raw: RawClient): Promise<void> {
  const event = bookingReserved()
  assert.deepEqual((await answers(raw, event, 1)).map((p) => p.cmd), ['puback'])
  for (let i = 0; i < 10; i++) {
    const packets = await answers(raw, event, 2 + i)
    assert.deepEqual(packets.map((p) => p.cmd), ['publish', 'puback'])
    assert.deepEqual(rejection(packets[0]), { reason: 'duplicate', id: event.id })
  }
}

test('each invalid event\'s rejection comes before its PUBACK; an accepted event gets its PUBACK alone', async (t) => {
  const raw = await publisher(t)
  for (let i = 0; i < 20; i++) {
    const invalid = bookingReserved({ nights: 0 })
    const packets = await answers(raw, invalid, 100 + i)
    assert.deepEqual(packets.map((p) => p.cmd), ['publish', 'puback'], `event ${i}`)
    assert.deepEqual(rejection(packets[0]), { reason: 'schema_validation_failed', id: invalid.id })

    const valid = bookingReserved()
    assert.deepEqual((await answers(raw, valid, 200 + i)).map((p) => p.cmd), ['puback'])
  }
})

test('a duplicate is told before its PUBACK', async (t) => {
  const raw = await publisher(t)
  await duplicatesToldFirst(raw)
})

test('onInvalid "disconnect": the rejection comes before the connection closes', async (t) => {
  const raw = await publisher(t, { validation: { rules: [{ match: 'albergue/#', onInvalid: 'disconnect' }] } })
  const invalid = bookingReserved({ nights: 0 })
  const packets = await answers(raw, invalid, 1)
  assert.deepEqual(packets.map((p) => p.cmd), ['publish'], 'the record, then the close (no PUBACK)')
  assert.deepEqual(rejection(packets[0]), { reason: 'schema_validation_failed', id: invalid.id })
})

test('with Redis, a duplicate found by the commit\'s claim is told before its PUBACK', { skip: redisUnavailable() ?? false }, async (t) => {
  const redis = await startRedis(t)
  const raw = await publisher(t, { redis: { url: redis.url } })
  await duplicatesToldFirst(raw)
})

test('limits.rejectionWaitMs 0: the answer does not wait for the record, so no wait is counted over the limit; each record still comes, in order', async (t) => {
  const broker = await startBroker(t, { limits: { rejectionWaitMs: 0 } })
  const raw = await subscribedTo(t, broker)
  const sent: unknown[] = []
  const told: unknown[] = []
  for (let i = 0; i < 20; i++) {
    const invalid = bookingReserved({ nights: 0 })
    sent.push(invalid.id)
    for (const packet of await answers(raw, invalid, 100 + i)) if (packet.cmd === 'publish') told.push(rejection(packet).id)
  }
  while (told.length < sent.length) {
    const packet = await raw.next()
    if (packet?.cmd !== 'publish') break
    told.push(rejection(packet).id)
  }
  assert.deepEqual(told, sent)
  const hits = (await broker.metrics.getSingleMetric('ce_broker_limit_hits_total')?.get())?.values ?? []
  assert.deepEqual(hits.filter((v) => v.labels.limit === 'rejection_wait'), [])
})
