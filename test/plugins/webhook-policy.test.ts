import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { test } from 'node:test'
import { Agent, request } from 'undici'
import { defaults } from '../../src/index.js'
import { DeniedAddressError, UrlPolicy, backoffMs, isRetryable, retryAfterMs, toMqttFilter } from '../../plugins/webhooks/index.js'
import { embeddedIPv4 } from '../../plugins/webhooks/addresses.js'
import { httpUrl, startBroker } from '../helpers/broker.js'
import { defer } from '../helpers/cleanup.js'

test('dotted filters map to MQTT filters; MQTT filters stay as they are; bad ones are refused', () => {
  assert.equal(toMqttFilter('albergue.v1.booking.*'), 'albergue/v1/booking/#')
  assert.equal(toMqttFilter('albergue.*.booking.reserved'), 'albergue/+/booking/reserved')
  assert.equal(toMqttFilter('*'), '#')
  assert.equal(toMqttFilter('albergue.v1.payment.completed'), 'albergue/v1/payment/completed')
  assert.equal(toMqttFilter('albergue/+/payment/#'), 'albergue/+/payment/#')
  assert.throws(() => toMqttFilter('albergue/#/x'), /topic filter "albergue\/#\/x"/)
})

test('backoff is a random wait below an exponential ceiling, capped; Retry-After reads seconds and dates', () => {
  const policy = { maxAttempts: 8, initialDelayMs: 1000, maxDelayMs: 300_000 }
  assert.deepEqual([1, 2, 3, 10].map((attempt) => backoffMs(policy, attempt, () => 0.999_999)), [999, 1999, 3999, 299_999])
  assert.equal(backoffMs(policy, 4, () => 0), 0)
  assert.equal(retryAfterMs('7'), 7000)
  assert.equal(retryAfterMs(new Date(Date.UTC(2026, 10, 23, 10, 0, 30)).toUTCString(), Date.UTC(2026, 10, 23, 10, 0, 0)), 30_000)
  assert.equal(retryAfterMs('soon'), undefined)
  assert.equal(retryAfterMs(undefined), undefined)
  assert.deepEqual([408, 429, 500, 503, 400, 404, 410].map(isRetryable), [true, true, true, true, false, false, false])
})

test('an IPv6 address carries an IPv4 one when IPv4-mapped, IPv4-compatible or NAT64 (well-known or local-use); IPv6 loopback and other prefixes do not', () => {
  assert.equal(embeddedIPv4('::ffff:169.254.169.254'), '169.254.169.254')
  assert.equal(embeddedIPv4('::FFFF:a9fe:a9fe'), '169.254.169.254')
  assert.equal(embeddedIPv4('0:0:0:0:0:ffff:a9fe:a9fe'), '169.254.169.254')
  assert.equal(embeddedIPv4('::a9fe:a9fe'), '169.254.169.254')
  assert.equal(embeddedIPv4('64:ff9b::169.254.169.254'), '169.254.169.254')
  assert.equal(embeddedIPv4('64:ff9b::a9fe:a9fe%eth0'), '169.254.169.254')
  // RFC 8215 local-use, as a /96 under 64:ff9b:1::/48
  assert.equal(embeddedIPv4('64:ff9b:1::a9fe:a9fe'), '169.254.169.254')
  assert.equal(embeddedIPv4('64:ff9b:1:abcd:0:1:a9fe:a9fe'), '169.254.169.254')
  assert.deepEqual(['::', '::1', '2001:db8::a9fe:a9fe', '64:ff9b:2::a9fe:a9fe', 'fd00:ec2::254', '169.254.169.254'].map(embeddedIPv4), [undefined, undefined, undefined, undefined, undefined, undefined])
})

test('the default deny list refuses every spelling of a denied IPv4 address at registration, naming the address and the network', async () => {
  const policy = new UrlPolicy(defaults().webhooks.denyNetworks)
  const refused: Array<[string, string]> = [
    ['http://169.254.169.254/latest', '169.254.169.254 is in a denied network (169.254.0.0/16)'],
    ['http://0xa9fea9fe/', '169.254.169.254 is'],
    ['http://2852039166/', '169.254.169.254 is'],
    ['http://[::ffff:169.254.169.254]/', '::ffff:a9fe:a9fe (IPv4 169.254.169.254) is in a denied network (169.254.0.0/16)'],
    ['http://[::169.254.169.254]/', '::a9fe:a9fe (IPv4 169.254.169.254) is'],
    ['http://[64:ff9b::a9fe:a9fe]/', '64:ff9b::a9fe:a9fe (IPv4 169.254.169.254) is'],
    ['http://[64:ff9b:1::a9fe:a9fe]/', '64:ff9b:1::a9fe:a9fe (IPv4 169.254.169.254) is in a denied network (169.254.0.0/16)'],
    ['http://0.0.0.0:8080/', '0.0.0.0 is in a denied network (0.0.0.0/8, always denied: it reaches the local host)'],
    ['http://[::]/', ':: is in a denied network (::/128, always denied: it reaches the local host)'],
    ['https://[fd00:ec2::254]/', 'fd00:ec2::254 is in a denied network (fd00:ec2::254/128)']
  ]
  for (const [url, why] of refused) assert.ok((await policy.problem(url))?.includes(why), url)
  for (const url of ['http://127.0.0.1:8080/x', 'http://[::1]/', 'http://[::ffff:7f00:1]/', 'http://[64:ff9b::808:808]/', 'http://[2001:db8::a9fe:a9fe]/']) {
    assert.equal(await policy.problem(url), undefined, url)
  }
})

test('POST /api/webhooks answers 400 naming the address for the IPv4-compatible, NAT64 and IPv4-mapped forms of the metadata address', async (t) => {
  const broker = await startBroker(t)
  for (const [url, address] of [['http://[::169.254.169.254]/', '::a9fe:a9fe'], ['http://[64:ff9b::a9fe:a9fe]/', '64:ff9b::a9fe:a9fe'], ['http://[::ffff:a9fe:a9fe]/', '::ffff:a9fe:a9fe']]) {
    const res = await fetch(httpUrl(broker, '/api/webhooks'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ service_id: 's', webhook_url: url, topic_filters: ['#'] }) })
    assert.equal(res.status, 400, url)
    const { error } = await res.json() as { error: { message: string } }
    assert.equal(error.message, `webhook_url address ${address} (IPv4 169.254.169.254) is in a denied network (169.254.0.0/16)`)
  }
})

test('the connector refuses an address literal in a denied network before connecting, in any IPv6 spelling', async (t) => {
  let hits = 0
  const server = createServer(function countHit (_req, res) { hits++; res.writeHead(200).end() })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.2', resolve) })
  defer(t, async () => { await new Promise((resolve) => { server.close(resolve) }) })
  const { port } = server.address() as AddressInfo
  const agent = new Agent({ connect: new UrlPolicy(['127.0.0.2/32']).connector() })
  defer(t, async () => { await agent.close() })
  for (const host of ['127.0.0.2', '[::ffff:127.0.0.2]']) {
    await assert.rejects(request(`http://${host}:${port}/x`, { method: 'POST', body: 'x', dispatcher: agent }), (err: unknown) => {
      assert.ok(err instanceof DeniedAddressError)
      assert.equal(err.network, '127.0.0.2/32')
      return true
    }, host)
  }
  assert.equal(hits, 0)
  // the same connector lets an allowed address through
  const open = new Agent({ connect: new UrlPolicy(['169.254.0.0/16']).connector() })
  defer(t, async () => { await open.close() })
  const res = await request(`http://[::ffff:127.0.0.2]:${port}/x`, { method: 'POST', body: 'x', dispatcher: open })
  await res.body.dump()
  assert.deepEqual([res.statusCode, hits], [200, 1])
})
