import { defer } from '../helpers/cleanup.js'
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { connect, httpUrl, mqttUrl, nextMessage, startBroker } from '../helpers/broker.js'
import { redisUnavailable, startRedis } from '../helpers/redis.js'

const skip = redisUnavailable() ?? false

test('with redis.url two brokers route messages to each other and share retained messages', { skip }, async (t) => {
  const redis = await startRedis(t)
  const a = await startBroker(t, { nodeId: 'node-a', redis: { url: redis.url } })
  const b = await startBroker(t, { nodeId: 'node-b', redis: { url: redis.url } })

  const onB = await connect(t, mqttUrl(b))
  await onB.subscribeAsync('hostel/#', { qos: 1 })
  const onA = await connect(t, mqttUrl(a))
  const crossing = nextMessage(onB, 'hostel/v1/booking/reserved')
  await onA.publishAsync('hostel/v1/booking/reserved', 'from a', { qos: 1 })
  assert.equal((await crossing).payload.toString(), 'from a')

  await onA.publishAsync('hostel/status', 'open', { qos: 1, retain: true })
  const retained = await (await fetch(httpUrl(b, '/api/mqtt/messages/hostel%2Fstatus'))).json() as { messages: Array<{ topic: string }> }
  assert.deepEqual(retained.messages.map((m) => m.topic), ['hostel/status'])

  const ready = await (await fetch(httpUrl(a, '/readyz'))).json()
  assert.deepEqual(ready, { status: 'ready', checks: { listeners: true, redis: true } })
  const health = await (await fetch(httpUrl(a, '/api/mqtt/health'))).json() as { persistence: string }
  assert.equal(health.persistence, 'redis')
})

test('a persistent session started on one node is resumed on another with its queued messages', { skip }, async (t) => {
  const redis = await startRedis(t)
  const a = await startBroker(t, { nodeId: 'node-a', redis: { url: redis.url } })
  const b = await startBroker(t, { nodeId: 'node-b', redis: { url: redis.url } })
  const first = await connect(t, mqttUrl(a), { clientId: 'notification-service', clean: false })
  await first.subscribeAsync('hostel/v1/payment/#', { qos: 1 })
  await first.endAsync()

  const publisher = await connect(t, mqttUrl(a))
  await publisher.publishAsync('hostel/v1/payment/completed', 'paid', { qos: 1 })

  const { default: mqtt } = await import('mqtt')
  const back = mqtt.connect(mqttUrl(b), { clientId: 'notification-service', clean: false, reconnectPeriod: 0, manualConnect: true })
  defer(t, () => back.endAsync(true))
  const queued = nextMessage(back, 'hostel/v1/payment/completed')
  back.connect()
  assert.equal((await queued).payload.toString(), 'paid')
})

test('when Redis dies /readyz turns 503 naming redis, and close() still finishes', { skip }, async (t) => {
  const redis = await startRedis(t)
  const { createBroker } = await import('../../src/index.js')
  const broker = await createBroker({ mqtt: { port: 0 }, http: { port: 0 }, logLevel: 'silent', redis: { url: redis.url } })
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
  await broker.close()
})
