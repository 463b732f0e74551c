import assert from 'node:assert/strict'
import { test } from 'node:test'
import { hashApiKey } from '../../src/index.js'
import { connect, httpUrl, mqttUrl, nextMessage, startBroker, subscribeGranted } from '../helpers/broker.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved } from '../helpers/events.js'
import { receiver } from '../helpers/receiver.js'
import { redisUnavailable, startRedis } from '../helpers/redis.js'

interface CatalogJson {
  node: string
  types: Array<{
    type: string
    topic: string
    schema: null | { file: string, title?: string, version: number, mode: string, history: Array<{ version: number, file?: string }>, fields: Array<{ path: string, type: string, required: boolean, format?: string, description?: string }> }
    publishers: Array<{ publisher: string, lastSeen: string }>
    subscribers: { webhooks: Array<{ service_id: string, filters: string[] }>, mqtt: Array<{ clientId: string, filter: string, qos: number }> }
  }>
}

async function catalogOf (url: string): Promise<CatalogJson> {
  const response = await fetch(url)
  assert.equal(response.status, 200)
  return await response.json() as CatalogJson
}

test('the catalog shows each type\'s version history and the latest version\'s fields, as JSON and as Markdown', async (t) => {
  const broker = await startBroker(t)
  const latest = await (await fetch(httpUrl(broker, '/api/schemas/albergue.v1.booking.reserved/versions/latest'))).json() as { schema: { properties: Record<string, Record<string, unknown>> } }
  const current = latest.schema
  const next = { ...current, properties: { ...current.properties, nights: { ...current.properties.nights, description: 'Nights booked, now up to 60', maximum: 60 } } }
  const registered = await fetch(httpUrl(broker, '/api/schemas/albergue.v1.booking.reserved/versions'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(next) })
  assert.equal(registered.status, 201)
  const reserved = (await catalogOf(httpUrl(broker, '/api/catalog'))).types.find((entry) => entry.type === 'albergue.v1.booking.reserved')
  assert.ok(reserved?.schema != null)
  assert.deepEqual([reserved.schema.version, reserved.schema.history.map((v) => v.version)], [2, [1, 2]])
  assert.equal(reserved.schema.fields.find((f) => f.path === 'nights')?.description, 'Nights booked, now up to 60', 'the fields are the latest version\'s')
  const markdown = await (await fetch(httpUrl(broker, '/api/catalog'), { headers: { accept: 'text/markdown' } })).text()
  assert.match(markdown, /version 2; compatibility BACKWARD, mode enforce/)
  assert.match(markdown, /- 1: registered .* from `albergue\.v1\.booking\.reserved\.json`\n- 2: registered .* through the API/)
})

test('GET /api/catalog lists every registered type with its fields, the publishers seen and the subscribers, as JSON and as Markdown', async (t) => {
  const broker = await startBroker(t)
  const hook = await receiver(t)
  await fetch(httpUrl(broker, '/api/webhooks'), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ service_id: 'notification-service', webhook_url: hook.url, topic_filters: ['albergue.v1.booking.*'] })
  })
  // an online subscriber at QoS 0, and a persistent session at QoS 1 that has gone away
  const registration = await connect(t, mqttUrl(broker), { clientId: 'registration-service' })
  await subscribeGranted(registration, ['albergue/v1/+/reserved'], 0)
  const government = await connect(t, mqttUrl(broker), { clientId: 'government-service', clean: false })
  await subscribeGranted(government, ['albergue/#'], 1)
  await government.endAsync()
  const booking = await connect(t, mqttUrl(broker), { clientId: 'booking-service' })
  await booking.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved()), { qos: 1 })
  // a rejected event does not make its client a publisher of the type
  const rogue = await connect(t, mqttUrl(broker), { clientId: 'rogue-desk' })
  await rogue.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved({ nights: 0 })), { qos: 1 })
  await fetch(httpUrl(broker, '/api/events'), {
    method: 'POST',
    headers: { 'content-type': 'application/cloudevents+json' },
    body: JSON.stringify(bookingReserved())
  })

  const catalog = await catalogOf(httpUrl(broker, '/api/catalog'))
  assert.equal(catalog.node, broker.nodeId)
  const types = catalog.types.map((entry) => entry.type)
  assert.ok(types.includes('albergue.v1.payment.completed'), 'types with no traffic are listed too')
  assert.deepEqual(types, [...types].sort())
  const reserved = catalog.types.find((entry) => entry.type === 'albergue.v1.booking.reserved')
  assert.ok(reserved !== undefined && reserved.schema !== null)
  assert.equal(reserved.topic, BOOKING_RESERVED_TOPIC)
  assert.equal(reserved.schema.file, 'albergue.v1.booking.reserved.json')
  assert.deepEqual(reserved.schema.fields.find((f) => f.path === 'nights'), { path: 'nights', type: 'integer', required: true })
  assert.deepEqual([reserved.schema.version, reserved.schema.history.map((v) => [v.version, v.file])], [1, [[1, 'albergue.v1.booking.reserved.json']]])
  // followed through $ref into the shared definitions, with the words nearest the field
  assert.deepEqual(reserved.schema.fields.find((f) => f.path === 'check_in_date'), { path: 'check_in_date', type: 'string', required: true, format: 'date', description: 'A calendar date, YYYY-MM-DD' })
  assert.deepEqual(reserved.schema.fields.find((f) => f.path === 'albergue_id'), { path: 'albergue_id', type: 'string', required: false, description: 'The hostel' })
  assert.deepEqual(reserved.publishers.map((p) => p.publisher), ['booking-service', 'http'])
  assert.ok(reserved.publishers.every((p) => !Number.isNaN(Date.parse(p.lastSeen))))
  assert.deepEqual(reserved.subscribers.webhooks.map((w) => [w.service_id, w.filters]), [['notification-service', ['albergue/v1/booking/#']]])
  assert.deepEqual(reserved.subscribers.mqtt, [
    { clientId: 'government-service', filter: 'albergue/#', qos: 1 },
    { clientId: 'registration-service', filter: 'albergue/v1/+/reserved', qos: 0 }
  ])
  const payment = catalog.types.find((entry) => entry.type === 'albergue.v1.payment.completed')
  assert.deepEqual(payment?.publishers, [])
  assert.deepEqual(payment?.subscribers.mqtt.map((s) => s.clientId), ['government-service'])
  assert.deepEqual(payment?.subscribers.webhooks, [])

  const markdown = await fetch(httpUrl(broker, '/api/catalog'), { headers: { accept: 'text/markdown' } })
  assert.equal(markdown.status, 200)
  assert.match(markdown.headers.get('content-type') ?? '', /^text\/markdown/)
  const text = await markdown.text()
  const section = text.slice(text.indexOf('## albergue.v1.booking.reserved'), text.indexOf('## albergue.v1.booking.reserved') + 3000).split('\n## ')[0] ?? ''
  assert.match(section, /Topic: `albergue\/v1\/booking\/reserved`/)
  assert.match(section, /\| `nights` \| integer \| yes \|/)
  assert.match(section, /\| `check_in_date` \| string \(date\) \| yes \| A calendar date, YYYY-MM-DD \|/)
  assert.match(section, /- `booking-service` \(last /)
  assert.match(section, /- webhook `notification-service` → http:\/\/127\.0\.0\.1:\d+\/hooks \(`albergue\/v1\/booking\/#`\)/)
  assert.match(section, /- MQTT `registration-service` on `albergue\/v1\/\+\/reserved` \(QoS 0\)/)
  assert.doesNotMatch(section, /rogue-desk/)
})

test('a type seen published without a schema is in the catalog with schema null; with API keys the catalog needs read', async (t) => {
  const key = 'ceb_catalog-test-key-0123456789abcdef'
  const broker = await startBroker(t, {
    validation: { rules: [{ match: 'albergue/#', cloudevents: true, schema: 'optional', onInvalid: 'dlq' }] },
    auth: { apiKeys: [{ id: 'reader', key: hashApiKey(key), scopes: ['read'] }] }
  })
  const event = bookingReserved({}, { type: 'albergue.v9.bed.painted', id: 'paint-1' })
  const publisher = await connect(t, mqttUrl(broker), { clientId: 'maintenance-service' })
  await publisher.publishAsync('albergue/v9/bed/painted', JSON.stringify(event), { qos: 1 })

  assert.equal((await fetch(httpUrl(broker, '/api/catalog'))).status, 401)
  const catalog = await (await fetch(httpUrl(broker, '/api/catalog'), { headers: { authorization: `Bearer ${key}` } })).json() as CatalogJson
  const painted = catalog.types.find((entry) => entry.type === 'albergue.v9.bed.painted')
  assert.equal(painted?.schema, null)
  assert.deepEqual(painted?.publishers.map((p) => p.publisher), ['maintenance-service'])
})

test('each node publishes its stats on $SYS/ce-broker/<nodeId>/stats: clients, events by outcome, webhooks with their state', async (t) => {
  const broker = await startBroker(t, { webhooks: { defaults: { retry: { maxAttempts: 1 } } } })
  const hook = await receiver(t, (n, res) => { res.writeHead(n === 1 ? 200 : 400).end() })
  await fetch(httpUrl(broker, '/api/webhooks'), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ service_id: 'notification-service', webhook_url: hook.url, topic_filters: ['albergue/#'] })
  })
  const publisher = await connect(t, mqttUrl(broker), { clientId: 'booking-service' })
  const event = bookingReserved()
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved({ nights: 0 })), { qos: 1 })
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved()), { qos: 1 })
  await hook.next(2)

  const watcher = await connect(t, mqttUrl(broker), { clientId: 'dashboard-1' })
  await subscribeGranted(watcher, [`$SYS/ce-broker/${broker.nodeId}/stats`], 0)
  interface Stats { node: string, at: string, intervalMs: number, clients: number, events: Record<string, number>, webhooks: Array<Record<string, unknown>> }
  // the second delivery's failure is counted a moment after the receiver answers
  let stats: Stats | undefined
  for (let i = 0; i < 5 && stats?.webhooks[0]?.failed !== 1; i++) {
    stats = JSON.parse((await nextMessage(watcher, `$SYS/ce-broker/${broker.nodeId}/stats`, 10_000)).payload.toString()) as Stats
  }
  assert.ok(stats !== undefined)
  assert.equal(stats.node, broker.nodeId)
  assert.equal(stats.intervalMs, 2000)
  assert.equal(stats.clients, 2)
  assert.deepEqual(stats.events, { accepted: 2, rejected: 1, duplicate: 1 })
  assert.equal(stats.webhooks.length, 1)
  const [webhook] = stats.webhooks
  assert.equal(webhook?.service_id, 'notification-service')
  assert.equal(webhook?.breaker, 'closed')
  assert.equal(webhook?.delivered, 1)
  assert.equal(webhook?.failed, 1)
  assert.equal(webhook?.lastStatus, 400)
  assert.equal(webhook?.queued, 0)
  assert.equal('secret' in (webhook ?? {}), false)
  // GET /api/webhooks shows the same state
  const listed = await (await fetch(httpUrl(broker, '/api/webhooks'))).json() as { subscriptions: Array<Record<string, unknown>> }
  assert.deepEqual(listed.subscriptions.map((s) => [s.delivered, s.failed, s.lastStatus, s.queued]), [[1, 1, 400, 0]])
})

const skipRedis = redisUnavailable() ?? false

test('with Redis the publishers one node saw are in every node\'s catalog', { skip: skipRedis }, async (t) => {
  const redis = await startRedis(t)
  const a = await startBroker(t, { nodeId: 'node-a', redis: { url: redis.url } })
  const b = await startBroker(t, { nodeId: 'node-b', redis: { url: redis.url } })
  const publisher = await connect(t, mqttUrl(a), { clientId: 'payment-service' })
  await publisher.publishAsync('albergue/v1/booking/reserved', JSON.stringify(bookingReserved()), { qos: 1 })
  // the pair is written to Redis after the publish is acked: look until it is there
  let publishers: string[] = []
  for (let i = 0; i < 50 && publishers.length === 0; i++) {
    const catalog = await catalogOf(httpUrl(b, '/api/catalog'))
    publishers = catalog.types.find((entry) => entry.type === 'albergue.v1.booking.reserved')?.publishers.map((p) => p.publisher) ?? []
    if (publishers.length === 0) await new Promise((resolve) => setTimeout(resolve, 100))
  }
  assert.deepEqual(publishers, ['payment-service'])
})
