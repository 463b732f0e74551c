import assert from 'node:assert/strict'
import { test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import mqtt from 'mqtt'
import { arrival } from '../helpers/arrival.js'
import { connect, mqttUrl, startBroker } from '../helpers/broker.js'
import { defer } from '../helpers/cleanup.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved } from '../helpers/events.js'
import { sentinelUnavailable, startSentinelGroup } from '../helpers/sentinel.js'

const skip = sentinelUnavailable() ?? false

test('Sentinel with redis.waitReplicas 1: an event the master took while its replicas lagged is not acknowledged before they have it, and reaches an offline session after the failover', { skip, timeout: 120_000 }, async (t) => {
  const group = await startSentinelGroup(t)
  const broker = await startBroker(t, { redis: { url: group.url, waitReplicas: 1, outageHoldMs: 8_000, nodeTimeoutMs: 2_000 } })
  // a persistent session that is offline: what it is sent waits in Redis only
  const away = await connect(t, mqttUrl(broker), { clientId: 'registration-service', clean: false })
  await away.subscribeAsync('albergue/#', { qos: 1 })
  await away.endAsync()
  // dropped unacked after redis.outageHoldMs, it comes back (also after CONNACK 3 while Redis fails over) and sends the event again
  const publisher = mqtt.connect(mqttUrl(broker), { clientId: 'booking-service', clean: false, reconnectPeriod: 200, reconnectOnConnackError: true })
  defer(t, () => publisher.endAsync(true))
  await new Promise<void>((resolve) => { publisher.once('connect', () => { resolve() }) })
  const first = bookingReserved()
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(first), { qos: 1 })

  // the replicas stop reading; the master takes the next event's entry and session copy, then dies.
  // With redis.waitReplicas 0 the event was acked at once and the failover lost it.
  await group.stallReplicas(4_000)
  const lagged = bookingReserved()
  const acked = publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(lagged), { qos: 1 })
  await Promise.race([acked, sleep(1_000)])
  await group.killMaster()
  await acked

  const ids = new Set<string>()
  const back = mqtt.connect(mqttUrl(broker), { clientId: 'registration-service', clean: false, reconnectPeriod: 0, manualConnect: true })
  defer(t, () => back.endAsync(true))
  back.on('message', (_topic, payload) => { ids.add(String((JSON.parse(payload.toString()) as { id: unknown }).id)) })
  back.connect()
  assert.deepEqual(await arrival(() => ids, [String(first.id), String(lagged.id)], 20_000), [])
})
