import assert from 'node:assert/strict'
import { test } from 'node:test'
import mqtt from 'mqtt'
import { arrival } from '../helpers/arrival.js'
import { connect, httpUrl, mqttUrl, startBroker } from '../helpers/broker.js'
import { defer } from '../helpers/cleanup.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved } from '../helpers/events.js'
import { receiver } from '../helpers/receiver.js'
import { sentinelUnavailable, startSentinelGroup } from '../helpers/sentinel.js'

const skip = sentinelUnavailable() ?? false
const EVENTS = 1_500
/** Publishes in flight at once. */
const WINDOW = 50

test(`Sentinel: the master killed during a steady QoS 1 load; after the failover every one of ${EVENTS} acknowledged events reaches the webhook and the subscriber`, { skip, timeout: 120_000 }, async (t) => {
  const group = await startSentinelGroup(t)
  const before = await group.masterPort()
  // each ack waits until a replica has the event's journal entry: the failover cannot take it away
  const broker = await startBroker(t, { redis: { url: group.url, waitReplicas: 1, outageHoldMs: 30_000 } })
  const hook = await receiver(t)
  const res = await fetch(httpUrl(broker, '/api/webhooks'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ service_id: 'notification-service', webhook_url: hook.url, topic_filters: ['albergue/#'] }) })
  assert.equal(res.status, 201)
  const subscribed = new Set<string>()
  const subscriber = await connect(t, mqttUrl(broker), { clientId: 'registration-service', clean: false })
  subscriber.on('message', (_topic, payload) => { subscribed.add(String((JSON.parse(payload.toString()) as { id: unknown }).id)) })
  await subscriber.subscribeAsync('albergue/#', { qos: 1 })

  // a publisher that keeps its session and sends what was not acked again if it is dropped
  const publisher = mqtt.connect(mqttUrl(broker), { clientId: 'booking-service', clean: false, reconnectPeriod: 200, reconnectOnConnackError: true })
  defer(t, () => publisher.endAsync(true))
  await new Promise<void>((resolve) => { publisher.once('connect', () => { resolve() }) })
  const events = Array.from({ length: EVENTS }, () => bookingReserved())
  let killed: Promise<void> | undefined
  for (let start = 0; start < events.length; start += WINDOW) {
    if (start >= EVENTS / 3) killed ??= group.killMaster()
    await Promise.all(events.slice(start, start + WINDOW).map(async (event) => await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })))
  }
  await killed
  assert.notEqual(await group.masterPort(), before, 'the Sentinels promoted a replica')

  const all = events.map((event) => String(event.id))
  const hookIds = (): Set<string> => new Set(hook.requests.map((r) => r.headers['ce-id'] ?? ''))
  assert.deepEqual(await arrival(hookIds, all, 60_000), [], 'every acknowledged event reached the webhook')
  assert.deepEqual(await arrival(() => subscribed, all, 10_000), [], 'every acknowledged event reached the subscriber')
  t.diagnostic(`failover from port ${before} to ${await group.masterPort()}; ${hook.requests.length - hookIds().size} webhook deliveries seen twice`)
})

test('redis+sentinel:// URLs that cannot work are refused at start-up, naming redis.url', { skip: false }, async (t) => {
  const { createBroker } = await import('../../src/index.js')
  for (const url of ['redis+sentinel://127.0.0.1:1/', 'redis+sentinel://127.0.0.1:99999/albergue']) {
    await assert.rejects(createBroker({ mqtt: { port: 0 }, http: { port: 0 }, redis: { url } }), (err: Error) => {
      assert.match(err.message, /redis\.url/)
      return true
    }, url)
  }
  t.diagnostic('refused before any connection is tried')
})
