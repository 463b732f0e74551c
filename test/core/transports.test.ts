import assert from 'node:assert/strict'
import { request } from 'node:http'
import { get as httpsGet } from 'node:https'
import { test } from 'node:test'
import { connect, httpUrl, mqttUrl, nextMessage, sample, startBroker } from '../helpers/broker.js'
import { makeCert } from '../helpers/certs.js'

test('MQTT over WebSocket at /mqtt: a browser-style client publishes and subscribes, across transports', async (t) => {
  const broker = await startBroker(t)
  const wsUrl = `ws://127.0.0.1:${broker.ports.http}/mqtt`
  const dashboard = await connect(t, wsUrl)
  const service = await connect(t, mqttUrl(broker))
  await dashboard.subscribeAsync('hostel/#', { qos: 1 })
  await service.subscribeAsync('dashboard/#', { qos: 1 })

  const toDashboard = nextMessage(dashboard, 'hostel/v1/bed/status_changed')
  await service.publishAsync('hostel/v1/bed/status_changed', '{"bed":"12A"}', { qos: 1 })
  assert.equal((await toDashboard).payload.toString(), '{"bed":"12A"}')

  const toService = nextMessage(service, 'dashboard/ping')
  await dashboard.publishAsync('dashboard/ping', 'hello', { qos: 1 })
  assert.equal((await toService).payload.toString(), 'hello')

  const metrics = await (await fetch(httpUrl(broker, '/metrics'))).text()
  assert.equal(sample(metrics, 'ce_broker_connected_clients', { transport: 'ws' }), 1)
  assert.equal(sample(metrics, 'ce_broker_connected_clients', { transport: 'tcp' }), 1)
  assert.equal(sample(metrics, 'ce_broker_publishes_received_total', { transport: 'ws' }), 1)
  assert.equal(sample(metrics, 'ce_broker_messages_delivered_total', { transport: 'ws' }), 1)
  assert.ok((sample(metrics, 'ce_broker_bytes_received_total', { transport: 'ws' }) ?? 0) > 0)
})

test('a WebSocket upgrade on any other path than /mqtt is refused with 404', async (t) => {
  const broker = await startBroker(t)
  const status = await new Promise<number | undefined>((resolve, reject) => {
    const req = request({
      host: '127.0.0.1',
      port: broker.ports.http,
      path: '/not-mqtt',
      headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==' }
    })
    req.on('response', (res) => { resolve(res.statusCode) })
    req.on('upgrade', () => { resolve(101) })
    req.on('error', reject)
    req.end()
  })
  assert.equal(status, 404)
})

test('MQTT over TLS and MQTT over WSS with a certificate made for the test', async (t) => {
  const cert = await makeCert(t)
  const broker = await startBroker(t, {
    mqtt: { tls: { port: 0, key: cert.keyFile, cert: cert.certFile } },
    http: { tls: { key: cert.keyFile, cert: cert.certFile } }
  })
  assert.ok(broker.ports.mqttTls !== undefined && broker.ports.mqttTls > 0)

  const overTls = await connect(t, `mqtts://127.0.0.1:${broker.ports.mqttTls}`, { ca: cert.cert, servername: 'localhost' })
  const overWss = await connect(t, `wss://localhost:${broker.ports.http}/mqtt`, { ca: cert.cert })
  await overWss.subscribeAsync('secure/topic', { qos: 1 })
  const arriving = nextMessage(overWss, 'secure/topic')
  await overTls.publishAsync('secure/topic', 'over tls', { qos: 1 })
  assert.equal((await arriving).payload.toString(), 'over tls')

  // the HTTP API is HTTPS on the same port
  const health = await new Promise<number | undefined>((resolve, reject) => {
    httpsGet({ host: '127.0.0.1', port: broker.ports.http, path: '/healthz', ca: cert.cert, servername: 'localhost' }, (res) => {
      res.resume()
      resolve(res.statusCode)
    }).on('error', reject)
  })
  assert.equal(health, 200)

  const metrics = await broker.metrics.metrics()
  assert.equal(sample(metrics, 'ce_broker_connected_clients', { transport: 'tls' }), 1)
  assert.equal(sample(metrics, 'ce_broker_connected_clients', { transport: 'wss' }), 1)
})

test('a TLS client that does not trust the certificate cannot connect', async (t) => {
  const cert = await makeCert(t)
  const broker = await startBroker(t, { mqtt: { tls: { port: 0, key: cert.keyFile, cert: cert.certFile } } })
  await assert.rejects(connect(t, `mqtts://127.0.0.1:${broker.ports.mqttTls}`, { servername: 'localhost' }), /self-signed|certificate/i)
  // and the plain TCP listener is still there beside it
  const plain = await connect(t, mqttUrl(broker))
  assert.equal(plain.connected, true)
})
