import assert from 'node:assert/strict'
import { test } from 'node:test'
import mqtt from 'mqtt'
import type { Broker } from '../../src/index.js'
import { connect, httpUrl, mqttUrl, nextMessage, startBroker } from '../helpers/broker.js'
import { defer } from '../helpers/cleanup.js'
import { captureLogs } from '../helpers/logs.js'
import { redisUnavailable, startRedis } from '../helpers/redis.js'

const skip = redisUnavailable() ?? false

test('when Redis dies /readyz turns 503 naming redis, and close() still finishes with every plugin stopped in time', { skip }, async (t) => {
  const redis = await startRedis(t)
  const { createBroker } = await import('../../src/index.js')
  // while Redis is away a plugin's error is logged at debug (the outage is logged once)
  const { logger, lines } = captureLogs('debug')
  // the webhooks queue used to wait forever for QUIT on a connection reconnecting to the dead Redis
  const broker = await createBroker({ mqtt: { port: 0 }, http: { port: 0 }, logger, pluginTimeoutMs: 5_000, redis: { url: redis.url } })
  await redis.kill()
  // poll until the broker has noticed: readiness is what a load balancer polls too
  let body: unknown
  for (let i = 0; i < 100; i++) {
    const res = await fetch(httpUrl(broker, '/readyz'))
    body = await res.json()
    if (res.status === 503) break
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  assert.deepEqual(body, { status: 'not_ready', checks: { listeners: true, redis: false } })
  const before = lines.length
  await broker.close()
  // nothing went wrong while closing: no warning, no plugin stop that failed or ran out of time
  const troubles = lines.slice(before).filter((line) => Number(line.level) >= 40 || line.phase === 'dispose')
  assert.deepEqual(troubles.map((line) => line.msg), [])
})

test('a publish held past redis.outageHoldMs disconnects its client unacked; the client sends it again after Redis is back, and it is delivered', { skip }, async (t) => {
  const redis = await startRedis(t, { persistent: true })
  const broker = await startBroker(t, { redis: { url: redis.url, outageHoldMs: 300 } })
  const away = await connect(t, mqttUrl(broker), { clientId: 'registration-service', clean: false })
  await away.subscribeAsync('hostel/held/#', { qos: 1 })
  await away.endAsync()
  // reconnects by itself, also after CONNACK 3, and keeps what was not acked
  const publisher = mqtt.connect(mqttUrl(broker), { clientId: 'booking-desk', clean: false, reconnectPeriod: 100, reconnectOnConnackError: true })
  defer(t, () => publisher.endAsync(true))
  await new Promise<void>((resolve) => { publisher.once('connect', () => { resolve() }) })

  await redis.kill()
  await readyz(broker, 503)
  const dropped = new Promise<void>((resolve) => { publisher.once('close', () => { resolve() }) })
  const acked = publisher.publishAsync('hostel/held/booking', 'sent during the outage', { qos: 1 })
  await dropped
  await redis.restart()
  await acked
  const back = mqtt.connect(mqttUrl(broker), { clientId: 'registration-service', clean: false, reconnectPeriod: 0, manualConnect: true })
  defer(t, () => back.endAsync(true))
  const arrived = nextMessage(back, 'hostel/held/booking', 10_000)
  back.connect()
  assert.equal((await arrived).payload.toString(), 'sent during the outage')
})

/** Poll `/readyz` until it answers `status`. */
async function readyz (broker: Broker, status: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if ((await fetch(httpUrl(broker, '/readyz'))).status === status) return
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error(`/readyz never answered ${status}`)
}
