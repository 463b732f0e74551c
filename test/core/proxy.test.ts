import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import mqtt from 'mqtt'
import { Command, IPv4Address, IPv4ProxyAddress, TransportProtocol, V2ProxyProtocol } from 'proxy-protocol-js'
import { hashPassword } from '../../plugins/auth/index.js'
import type { Broker } from '../../src/index.js'
import { httpUrl, sample, startBroker } from '../helpers/broker.js'
import { defer } from '../helpers/cleanup.js'
import { rawConnect } from '../helpers/raw.js'

/** A PROXY v2 header as HAProxy's `send-proxy-v2` writes it, naming `client` as the source. */
function proxyV2 (client: [number, number, number, number]): Buffer {
  const address = new IPv4ProxyAddress(IPv4Address.createFrom(client), 40_000, IPv4Address.createFrom([10, 0, 0, 2]), 1883)
  return Buffer.from(new V2ProxyProtocol(Command.PROXY, TransportProtocol.STREAM, address).build())
}

/** Connect over TCP with `header` first; resolves whether the broker answered CONNECT or closed the socket. */
async function tryConnect (t: TestContext, broker: Broker, header: Buffer | string, clientId: string, credentials: { username?: string, password?: Buffer } = {}): Promise<'kept' | 'closed' | number> {
  const client = await rawConnect(t, broker.ports.mqtt)
  client.sendBytes(typeof header === 'string' ? Buffer.from(header, 'latin1') : header)
  client.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId, keepalive: 0, ...credentials })
  const reply = await client.next()
  if (reply?.cmd !== 'connack') return 'closed'
  return reply.returnCode === 0 ? 'kept' : reply.returnCode ?? 'kept'
}

async function tempDir (t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ce-broker-proxy-'))
  defer(t, () => rm(dir, { recursive: true, force: true }))
  return dir
}

test('mqtt.proxyProtocol: limits count the client a PROXY header names, and a socket without a header is closed', async (t) => {
  const broker = await startBroker(t, { mqtt: { proxyProtocol: true }, limits: { maxConnectionsPerAddress: 1 } })
  // every socket comes from 127.0.0.1, the load balancer; the headers name two clients
  assert.equal(await tryConnect(t, broker, proxyV2([198, 51, 100, 7]), 'desk-1'), 'kept')
  assert.equal(await tryConnect(t, broker, 'PROXY TCP4 198.51.100.8 10.0.0.2 40001 1883\r\n', 'desk-2'), 'kept', 'a v1 header too')
  assert.equal(await tryConnect(t, broker, proxyV2([198, 51, 100, 7]), 'desk-3'), 'closed', 'a second connection of 198.51.100.7')
  assert.equal(sample(await broker.metrics.metrics(), 'ce_broker_limit_hits_total', { limit: 'connections_per_address' }), 1)

  assert.equal(await tryConnect(t, broker, Buffer.alloc(0), 'no-header'), 'closed', 'plain MQTT on a PROXY listener')
  assert.equal(await tryConnect(t, broker, 'PROXY TCP4 not-an-address 10.0.0.2 1 2\r\n', 'bad-header'), 'closed')
  assert.equal(sample(await broker.metrics.metrics(), 'ce_broker_limit_hits_total', { limit: 'proxy_header' }), 2)
})

test('mqtt.proxyProtocol: the audit names the address from the header', async (t) => {
  const file = join(await tempDir(t), 'audit.jsonl')
  const broker = await startBroker(t, {
    mqtt: { proxyProtocol: true },
    audit: { file },
    auth: { users: [{ username: 'booking-service', password: await hashPassword('right', 10), roles: [] }] }
  })
  assert.equal(await tryConnect(t, broker, proxyV2([203, 0, 113, 50]), 'intruder', { username: 'booking-service', password: Buffer.from('wrong') }), 4)
  await broker.close()
  const [line] = (await readFile(file, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
  assert.deepEqual([line?.reason, line?.remoteAddress], ['bad_credentials', '203.0.113.50'])
})

test('http.trustProxy: a WebSocket client is the one X-Forwarded-For names, only when the proxy is trusted', async (t) => {
  const connectWs = async (broker: Broker, forwardedFor: string, clientId: string): Promise<'kept' | 'closed'> => {
    const url = httpUrl(broker, '/mqtt').replace('http:', 'ws:')
    try {
      const client = await mqtt.connectAsync(url, { clientId, reconnectPeriod: 0, connectTimeout: 3_000, wsOptions: { headers: { 'x-forwarded-for': forwardedFor } } })
      defer(t, () => client.endAsync(true))
      return 'kept'
    } catch {
      return 'closed'
    }
  }
  const trusting = await startBroker(t, { http: { trustProxy: 'loopback' }, limits: { maxConnectionsPerAddress: 1 } })
  assert.equal(await connectWs(trusting, '198.51.100.7', 'dash-1'), 'kept')
  assert.equal(await connectWs(trusting, '198.51.100.8', 'dash-2'), 'kept')
  assert.equal(await connectWs(trusting, '198.51.100.7', 'dash-3'), 'closed')

  const untrusting = await startBroker(t, { limits: { maxConnectionsPerAddress: 1 } })
  assert.equal(await connectWs(untrusting, '198.51.100.7', 'dash-1'), 'kept')
  assert.equal(await connectWs(untrusting, '198.51.100.8', 'dash-2'), 'closed', 'without trustProxy both come from 127.0.0.1')
})

test('http.trustProxy that names no address stops start-up, naming the setting', async (t) => {
  await assert.rejects(startBroker(t, { http: { trustProxy: 'loopback, not-an-address' } }), /http\.trustProxy .*not-an-address/)
})
