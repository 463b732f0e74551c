import assert from 'node:assert/strict'
import { test } from 'node:test'
import { connect, httpUrl, mqttUrl, sample, startBroker } from '../helpers/broker.js'

test('/healthz, /readyz and /api/mqtt/health answer for an embedded node', async (t) => {
  const broker = await startBroker(t, { nodeId: 'albergue-1' })
  const client = await connect(t, mqttUrl(broker))
  assert.equal(client.connected, true)

  const healthz = await fetch(httpUrl(broker, '/healthz'))
  assert.equal(healthz.status, 200)
  assert.deepEqual(await healthz.json(), { status: 'ok' })

  const readyz = await fetch(httpUrl(broker, '/readyz'))
  assert.equal(readyz.status, 200)
  assert.deepEqual(await readyz.json(), { status: 'ready', checks: { listeners: true } })

  const health = await (await fetch(httpUrl(broker, '/api/mqtt/health'))).json() as Record<string, unknown>
  assert.equal(health.status, 'ok')
  assert.equal(health.nodeId, 'albergue-1')
  assert.equal(health.persistence, 'memory')
  assert.equal(health.connectedClients, 1)
  assert.match(String(health.version), /^\d+\.\d+\.\d+/)
})

test('/metrics serves Prometheus text with per-transport counters from this broker only', async (t) => {
  const broker = await startBroker(t)
  const subscriber = await connect(t, mqttUrl(broker))
  const publisher = await connect(t, mqttUrl(broker))
  await subscriber.subscribeAsync('metrics/#', { qos: 1 })
  const delivered = new Promise<void>((resolve) => { subscriber.on('message', () => { resolve() }) })
  await publisher.publishAsync('metrics/one', 'x', { qos: 1 })
  await delivered

  const res = await fetch(httpUrl(broker, '/metrics'))
  assert.equal(res.status, 200)
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain/)
  const text = await res.text()
  assert.equal(sample(text, 'ce_broker_connected_clients', { transport: 'tcp' }), 2)
  assert.equal(sample(text, 'ce_broker_connections_total', { transport: 'tcp' }), 2)
  assert.equal(sample(text, 'ce_broker_publishes_received_total', { transport: 'tcp' }), 1)
  assert.equal(sample(text, 'ce_broker_messages_delivered_total', { transport: 'tcp' }), 1)
  assert.ok((sample(text, 'ce_broker_bytes_received_total', { transport: 'tcp' }) ?? 0) > 0)
  assert.ok((sample(text, 'ce_broker_bytes_sent_total', { transport: 'tcp' }) ?? 0) > 0)
  assert.ok(sample(text, 'ce_broker_process_cpu_seconds_total') !== undefined, 'process metrics are on the broker registry')
})

test('GET /api/mqtt/retained/:topic lists retained messages on a topic or a filter', async (t) => {
  const broker = await startBroker(t)
  const publisher = await connect(t, mqttUrl(broker))
  const event = { specversion: '1.0', id: 'b-1', source: '/booking', type: 'albergue.v1.booking.confirmed', data: { booking_id: 'b-1' } }
  await publisher.publishAsync('hostel/v1/booking/confirmed', JSON.stringify(event), { qos: 1, retain: true })
  await publisher.publishAsync('hostel/v1/bed/status_changed', Buffer.from([0xff, 0x00, 0x01]), { qos: 0, retain: true })
  await publisher.publishAsync('elsewhere/x', 'not listed', { qos: 1, retain: true })

  const one = await fetch(httpUrl(broker, `/api/mqtt/retained/${encodeURIComponent('hostel/v1/booking/confirmed')}`))
  assert.equal(one.status, 200)
  assert.deepEqual(await one.json(), {
    filter: 'hostel/v1/booking/confirmed',
    messages: [{ topic: 'hostel/v1/booking/confirmed', qos: 1, payload: event }]
  })

  const filtered = await (await fetch(httpUrl(broker, '/api/mqtt/retained/hostel/%23'))).json() as { filter: string, messages: Array<{ topic: string }> }
  assert.equal(filtered.filter, 'hostel/#')
  assert.deepEqual(filtered.messages.map((m) => m.topic).sort(), ['hostel/v1/bed/status_changed', 'hostel/v1/booking/confirmed'])
  const binary = filtered.messages.find((m) => m.topic === 'hostel/v1/bed/status_changed')
  assert.deepEqual(binary, { topic: 'hostel/v1/bed/status_changed', qos: 0, payloadBase64: '/wAB' })

  const limited = await (await fetch(httpUrl(broker, '/api/mqtt/retained/%23?limit=1'))).json() as { messages: unknown[] }
  assert.equal(limited.messages.length, 1)
})

test('HTTP errors are JSON with a code and a message, 404s included', async (t) => {
  const broker = await startBroker(t)
  const missing = await fetch(httpUrl(broker, '/no/such/route'))
  assert.equal(missing.status, 404)
  assert.deepEqual(await missing.json(), { error: { code: 'not_found', message: 'no route for GET /no/such/route' } })

  const badFilter = await fetch(httpUrl(broker, `/api/mqtt/retained/${encodeURIComponent('a/#/b')}`))
  assert.equal(badFilter.status, 400)
  const body = await badFilter.json() as { error: { code: string, message: string } }
  assert.equal(body.error.code, 'bad_request')
  assert.match(body.error.message, /"a\/#\/b"/)

  const badLimit = await fetch(httpUrl(broker, '/api/mqtt/retained/x?limit=0'))
  assert.equal(badLimit.status, 400)
  const limitBody = await badLimit.json() as { error: { code: string, details: unknown[] } }
  assert.equal(limitBody.error.code, 'bad_request')
  assert.ok(Array.isArray(limitBody.error.details))
})
