import assert from 'node:assert/strict'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { test, type TestContext } from 'node:test'
import { connect, httpUrl, mqttUrl, sample, startBroker } from '../helpers/broker.js'
import { defer } from '../helpers/cleanup.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved } from '../helpers/events.js'

const ORIGIN = 'broker.example'

interface Seen { readonly method: string, readonly headers: IncomingMessage['headers'], readonly body: string }

/**
 * A real HTTP endpoint that answers the validation handshake (`OPTIONS`) with
 * `onOptions` and every delivery with 200, recording each request in order.
 */
async function endpoint (t: TestContext, onOptions: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ url: string, seen: Seen[], deliveries: (count: number) => Promise<Seen[]> }> {
  const seen: Seen[] = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => { chunks.push(chunk) })
    req.on('end', () => {
      seen.push({ method: req.method ?? '', headers: req.headers, body: Buffer.concat(chunks).toString() })
      if (req.method === 'OPTIONS') onOptions(req, res)
      else res.writeHead(200).end()
    })
  })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  defer(t, async () => {
    server.closeAllConnections()
    await new Promise((resolve) => { server.close(resolve) })
  })
  const deliveries = async (count: number): Promise<Seen[]> => {
    const posts = (): Seen[] => seen.filter((s) => s.method === 'POST')
    for (let i = 0; i < 500 && posts().length < count; i++) await new Promise((resolve) => setTimeout(resolve, 20))
    assert.equal(posts().length, count, 'deliveries arrived')
    return posts()
  }
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`, seen, deliveries }
}

/** Agrees to the broker's origin, with `rate` as WebHook-Allowed-Rate when given. */
function agree (allowedOrigin = ORIGIN, rate?: string) {
  return (_req: IncomingMessage, res: ServerResponse): void => {
    res.writeHead(200, { 'webhook-allowed-origin': allowedOrigin, allow: 'POST', ...(rate === undefined ? {} : { 'webhook-allowed-rate': rate }) }).end()
  }
}

async function register (brokerHttp: string, body: object): Promise<{ status: number, json: Record<string, unknown> }> {
  const response = await fetch(`${brokerHttp}/api/webhooks`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  return { status: response.status, json: await response.json() as Record<string, unknown> }
}

test('an endpoint that answers the handshake is asked with the broker\'s origin, on every registration, and gets deliveries', async (t) => {
  const broker = await startBroker(t, { webhooks: { origin: ORIGIN } })
  const hook = await endpoint(t, agree())
  const body = { service_id: 'agreeing', webhook_url: hook.url, topic_filters: ['albergue/#'], handshake: true }
  assert.equal((await register(httpUrl(broker), body)).status, 201)
  assert.equal((await register(httpUrl(broker), body)).status, 200)
  const asked = hook.seen.filter((s) => s.method === 'OPTIONS')
  assert.equal(asked.length, 2, 'a registration again runs the handshake again')
  assert.equal(asked[0]?.headers['webhook-request-origin'], ORIGIN)
  const publisher = await connect(t, mqttUrl(broker))
  const event = bookingReserved()
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })
  assert.equal((await hook.deliveries(1))[0]?.headers['ce-id'], event.id)
  assert.equal(sample(await broker.metrics.metrics(), 'ce_broker_webhook_handshakes_total', { result: 'ok' }), 2)
})

test('an endpoint that does not agree is refused with what it answered, and nothing is registered', async (t) => {
  const broker = await startBroker(t, { webhooks: { origin: ORIGIN } })
  const cases: Array<[string, (req: IncomingMessage, res: ServerResponse) => void, RegExp]> = [
    ['no header', (_req, res) => { res.writeHead(200).end() }, /answered HTTP 200 without WebHook-Allowed-Origin/],
    ['wrong origin', agree('other.example'), /allows origin "other\.example", not "broker\.example"/],
    ['405', (_req, res) => { res.writeHead(405, { allow: 'POST' }).end() }, /answered HTTP 405/],
    ['bad rate', agree(ORIGIN, 'lots'), /WebHook-Allowed-Rate "lots" is neither a positive integer nor \*/]
  ]
  for (const [what, answer, message] of cases) {
    const hook = await endpoint(t, answer)
    const refused = await register(httpUrl(broker), { service_id: what, webhook_url: hook.url, topic_filters: ['albergue/#'], handshake: true })
    assert.equal(refused.status, 400, what)
    const error = refused.json.error as { message: string }
    assert.match(error.message, new RegExp(`validation handshake with ${hook.url.replaceAll('.', '\\.')} failed`), what)
    assert.match(error.message, message, what)
  }
  const listed = await (await fetch(httpUrl(broker, '/api/webhooks'))).json() as { subscriptions: unknown[] }
  assert.deepEqual(listed.subscriptions, [])
  assert.equal(sample(await broker.metrics.metrics(), 'ce_broker_webhook_handshakes_total', { result: 'refused' }), cases.length)
  // without handshake: true nothing is asked
  const plain = await endpoint(t, agree())
  assert.equal((await register(httpUrl(broker), { service_id: 'plain', webhook_url: plain.url, topic_filters: ['albergue/#'] })).status, 201)
  assert.deepEqual(plain.seen, [])
})

test('WebHook-Allowed-Rate is honoured: deliveries wait for it, and all arrive in order', async (t) => {
  const broker = await startBroker(t, { webhooks: { origin: ORIGIN } })
  // 1200 a minute: one every 50 ms
  const hook = await endpoint(t, agree('*', '1200'))
  const created = await register(httpUrl(broker), { service_id: 'slow', webhook_url: hook.url, topic_filters: ['albergue/#'], handshake: true })
  assert.equal(created.status, 201)
  assert.equal(created.json.allowedRate, 1200)
  const publisher = await connect(t, mqttUrl(broker))
  const events = Array.from({ length: 6 }, () => bookingReserved())
  for (const event of events) await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })
  const delivered = await hook.deliveries(events.length)
  assert.deepEqual(delivered.map((d) => d.headers['ce-id']), events.map((e) => e.id))
  assert.ok((sample(await broker.metrics.metrics(), 'ce_broker_webhook_rate_held_total', { subscription: String(created.json.id) }) ?? 0) > 0, 'deliveries were held for the rate')
})

test('the handshake goes through the URL policy: a denied address is refused without a request', async (t) => {
  const broker = await startBroker(t, { webhooks: { origin: ORIGIN, denyNetworks: ['127.0.0.0/8'] } })
  const hook = await endpoint(t, agree())
  const refused = await register(httpUrl(broker), { service_id: 'denied', webhook_url: hook.url, topic_filters: ['albergue/#'], handshake: true })
  assert.equal(refused.status, 400)
  assert.match((refused.json.error as { message: string }).message, /127\.0\.0\.0\/8/)
  assert.deepEqual(hook.seen, [], 'the endpoint was never asked')
})

test('a config subscription whose handshake fails at start-up is held, disabled with the reason; one that passes delivers', async (t) => {
  const refusing = await endpoint(t, (_req, res) => { res.writeHead(405).end() })
  const agreeing = await endpoint(t, agree())
  const broker = await startBroker(t, {
    webhooks: {
      origin: ORIGIN,
      subscriptions: [
        { service_id: 'refusing', webhook_url: refusing.url, topic_filters: ['albergue/#'], handshake: true },
        { service_id: 'agreeing', webhook_url: agreeing.url, topic_filters: ['albergue/#'], handshake: true }
      ]
    }
  })
  const listed = await (await fetch(httpUrl(broker, '/api/webhooks'))).json() as { subscriptions: Array<{ service_id: string, disabled?: { reason: string } }> }
  const held = listed.subscriptions.find((s) => s.service_id === 'refusing')
  assert.match(held?.disabled?.reason ?? '', /validation handshake .* failed: it answered HTTP 405/)
  assert.equal(listed.subscriptions.find((s) => s.service_id === 'agreeing')?.disabled, undefined)
  const publisher = await connect(t, mqttUrl(broker))
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved()), { qos: 1 })
  await agreeing.deliveries(1)
  assert.equal(refusing.seen.filter((s) => s.method === 'POST').length, 0, 'nothing is delivered to a held subscription')
})
