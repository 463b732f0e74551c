import assert from 'node:assert/strict'
import { test } from 'node:test'
import mqtt from 'mqtt'
import { connect, mqttUrl, nextMessage, startBroker, subscribeGranted } from '../helpers/broker.js'
import { rawConnect } from '../helpers/raw.js'
import { bookingReserved, BOOKING_RESERVED_TOPIC } from '../helpers/events.js'
import { LogSampler } from '../../src/core/log-sampler.js'
import { captureLogs } from '../helpers/logs.js'


test('a client id holding +, # or / or U+0000 is refused with CONNACK 2, before it can read others\' $rejections', async (t) => {
  const broker = await startBroker(t)
  for (const clientId of ['#', '+', 'a/b', 'booking/#', 'x\u0000y']) {
    const raw = await rawConnect(t, broker.ports.mqtt)
    raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId, keepalive: 0 })
    const reply = await raw.next()
    assert.equal(reply?.cmd, 'connack', JSON.stringify(clientId))
    assert.equal(reply?.cmd === 'connack' ? reply.returnCode : undefined, 2, `${JSON.stringify(clientId)} refused as identifier rejected`)
  }
  // the ordinary ids still get in, dots, dashes, spaces, `$` and accents included
  for (const clientId of ['booking-service', 'peregrino José.1', '$weird']) {
    const client = await connect(t, mqttUrl(broker), { clientId })
    assert.equal(client.connected, true)
  }
})

test('$rejections/<id> is granted as one topic: no wildcard reads another client\'s rejections', async (t) => {
  const broker = await startBroker(t)
  const snoop = await connect(t, mqttUrl(broker), { clientId: 'snoop' })
  assert.deepEqual(await subscribeGranted(snoop, ['$rejections/#', '$rejections/+', '$rejections/snoop/#', '$rejections/snoop'], 1), [128, 128, 128, 1])

  const victim = await connect(t, mqttUrl(broker), { clientId: 'victim' })
  await victim.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved({ nights: 0 })), { qos: 1 })
  const own = nextMessage(snoop)
  await snoop.publishAsync(BOOKING_RESERVED_TOPIC, 'not json', { qos: 1 })
  const first = await own
  assert.equal(first.topic, '$rejections/snoop', 'the snoop got its own rejection and not the victim\'s before it')
})

test('a client\'s refusals cost one warn line per interval with the suppressed count: denied publishes, rejected events, refused subscriptions, bad client ids', async (t) => {
  const { logger, lines } = captureLogs('warn')
  const broker = await startBroker(t, { logger, limits: { clientLogIntervalMs: 600_000 } })
  const noisy = await connect(t, mqttUrl(broker), { clientId: 'noisy' })
  for (let i = 0; i < 30; i++) await noisy.publishAsync(`$forged/${i}`, 'x', { qos: 1 })
  for (let i = 0; i < 30; i++) await noisy.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved({ nights: 0 })), { qos: 1 })
  // one SUBSCRIBE of 50 refused filters: one line for the packet, with the count
  assert.deepEqual(new Set(await subscribeGranted(noisy, Array.from({ length: 50 }, (_, i) => `$rejections/other-${i}`), 0)), new Set([128]))

  const byNoisy = lines.filter((line) => line.clientId === 'noisy')
  assert.equal(byNoisy.length, 1, `one line for 110 refusals, got ${byNoisy.length}`)
  assert.equal(byNoisy.some((line) => 'err' in line), false, 'no stack for an expected refusal')

  // another client is not silenced by the noisy one
  const quiet = await connect(t, mqttUrl(broker), { clientId: 'quiet' })
  await quiet.publishAsync('$forged/quiet', 'x', { qos: 1 })
  assert.equal(lines.filter((line) => line.clientId === 'quiet').length, 1)

  // 20 CONNECTs with a forbidden id from one address: one line
  const before = lines.length
  for (let i = 0; i < 20; i++) {
    await assert.rejects(mqtt.connectAsync(mqttUrl(broker), { clientId: `bad/${i}`, reconnectPeriod: 0 }))
  }
  assert.equal(lines.slice(before).filter((line) => typeof line.msg === 'string' && line.msg.startsWith('connection refused')).length, 1)
})

test('LogSampler: the first line of an interval is written with how many were suppressed before it', () => {
  const sampler = new LogSampler(10_000)
  assert.equal(sampler.take('a', 0), 0)
  assert.equal(sampler.take('a', 1_000), undefined)
  assert.equal(sampler.take('a', 9_999), undefined)
  assert.equal(sampler.take('b', 9_999), 0, 'each key has its own interval')
  assert.equal(sampler.take('a', 10_000), 2)
  assert.equal(sampler.take('a', 10_001), undefined)
  assert.equal(new LogSampler(0).take('a', 0), 0)
  assert.equal(new LogSampler(0).take('a', 0), 0, 'an interval of 0 writes every line')
})
