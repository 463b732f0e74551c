import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { Webhook } from 'standardwebhooks'
import { closed, collectMessages, connect, nextMessage, sample, subscribeGranted, type Received } from '../helpers/broker.js'
import { makeCert } from '../helpers/certs.js'
import { defer } from '../helpers/cleanup.js'
import { startCli, type CliProcess } from '../helpers/cli.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved } from '../helpers/events.js'
import { receiver } from '../helpers/receiver.js'
import { redisUnavailable, startRedis } from '../helpers/redis.js'

const skip = redisUnavailable() ?? false
const SECRET = 'a-shared-secret-of-the-government-gateway'

/** A `ce-broker` process of the cluster, started through the CLI as users start it. */
interface Node {
  readonly id: string
  readonly mqtt: string
  readonly http: string
  readonly cli: CliProcess
}

async function startNode (t: TestContext, redisUrl: string, id: string, env: Readonly<Record<string, string>> = {}): Promise<Node> {
  const cli = startCli(t, ['--mqtt-port', '0', '--http-port', '0', '--node-id', id, '--redis', redisUrl], env)
  const ready = await cli.waitForLog((line) => line.msg === 'ready', 30_000)
  return { id, mqtt: `mqtt://127.0.0.1:${String(ready.mqttPort)}`, http: `http://127.0.0.1:${String(ready.httpPort)}`, cli }
}

async function metricsOf (node: Node): Promise<string> {
  return await (await fetch(`${node.http}/metrics`)).text()
}

/** Poll `/readyz` (as a load balancer does) until it answers `status`; the body it answered with. */
async function readiness (node: Node, status: 200 | 503): Promise<unknown> {
  for (let i = 0; i < 400; i++) {
    const res = await fetch(`${node.http}/readyz`)
    const body: unknown = await res.json()
    if (res.status === status) return body
    await sleep(50)
  }
  throw new Error(`${node.id}: /readyz never answered ${status}`)
}

/** The CONNACK return code of a refused connection. */
async function refusal (url: string, options: IClientOptions = {}): Promise<number> {
  try {
    const client = await mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5_000, ...options })
    await client.endAsync(true)
  } catch (err: unknown) {
    const code = typeof err === 'object' && err !== null && 'code' in err ? err.code : undefined
    if (typeof code === 'number') return code
    throw err
  }
  throw new Error('the connection was accepted')
}

/** A client whose CONNECT is sent only once the `message` listener is on (queued messages come at once). */
async function resume (t: TestContext, url: string, clientId: string, topic: string): Promise<{ client: MqttClient, message: Promise<Received> }> {
  const client = mqtt.connect(url, { clientId, clean: false, reconnectPeriod: 0, manualConnect: true })
  defer(t, () => client.endAsync(true))
  const message = nextMessage(client, topic, 10_000)
  client.connect()
  return { client, message }
}

async function register (node: Node, body: object): Promise<Record<string, unknown>> {
  const res = await fetch(`${node.http}/api/webhooks`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  assert.equal(res.status, 201)
  return await res.json() as Record<string, unknown>
}

test('two ce-broker processes on one Redis act as one broker', { skip }, async (t) => {
  const redis = await startRedis(t)
  const [a, b] = await Promise.all([startNode(t, redis.url, 'node-a'), startNode(t, redis.url, 'node-b')])

  await t.test('a publish on A at QoS 0, 1 and 2 reaches a subscriber on B at that QoS', async (t) => {
    const onB = await connect(t, b.mqtt)
    assert.deepEqual(await subscribeGranted(onB, ['hostel/cluster/#'], 2), [2])
    const onA = await connect(t, a.mqtt)
    for (const qos of [0, 1, 2] as const) {
      const arrived = nextMessage(onB, `hostel/cluster/qos${qos}`)
      await onA.publishAsync(`hostel/cluster/qos${qos}`, `at qos ${qos}`, { qos })
      const message = await arrived
      assert.deepEqual([message.payload.toString(), message.qos], [`at qos ${qos}`, qos])
    }
  })

  await t.test('a message retained through A is read by a subscriber on B', async (t) => {
    const onA = await connect(t, a.mqtt)
    await onA.publishAsync('hostel/cluster/status', 'open until 22:00', { qos: 1, retain: true })
    const onB = await connect(t, b.mqtt)
    const retained = nextMessage(onB, 'hostel/cluster/status')
    await onB.subscribeAsync('hostel/cluster/status', { qos: 1 })
    const message = await retained
    assert.deepEqual([message.payload.toString(), message.retain], ['open until 22:00', true])
  })

  await t.test('a persistent session made on A, offline, gets what was published on B once it comes back on B', async (t) => {
    const first = await connect(t, a.mqtt, { clientId: 'notification-service', clean: false })
    await first.subscribeAsync('hostel/cluster/payment/#', { qos: 1 })
    // B learns of a subscription made on A through Redis, in order with what A publishes next:
    // once a message A published after it has reached B, B knows the session is owed messages
    const onB = await connect(t, b.mqtt)
    await onB.subscribeAsync('hostel/cluster/probe', { qos: 1 })
    const probed = nextMessage(onB, 'hostel/cluster/probe')
    await first.publishAsync('hostel/cluster/probe', 'after the subscription', { qos: 1 })
    await probed
    await first.endAsync()
    await onB.publishAsync('hostel/cluster/payment/completed', 'paid while away', { qos: 1 })
    const { message } = await resume(t, b.mqtt, 'notification-service', 'hostel/cluster/payment/completed')
    assert.equal((await message).payload.toString(), 'paid while away')
  })

  await t.test('the same client id connecting on B takes the session over from A', async (t) => {
    const onA = await connect(t, a.mqtt, { clientId: 'front-desk-1', clean: false })
    const dropped = closed(onA, 10_000)
    const onB = await connect(t, b.mqtt, { clientId: 'front-desk-1', clean: false })
    await dropped
    assert.equal(onB.connected, true, 'the newer connection keeps the session')
  })

  await t.test('an event sent again through the other node is a duplicate: acked, delivered once, counted', async (t) => {
    const watcher = await connect(t, b.mqtt)
    await watcher.subscribeAsync('albergue/v1/booking/#', { qos: 1 })
    const received = collectMessages(watcher, 2, 10_000)
    const event = bookingReserved()
    const onA = await connect(t, a.mqtt)
    const onB = await connect(t, b.mqtt)
    await onA.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })
    await onB.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })
    // published after the duplicate, on the same node: it arrives after it would have
    const sentinel = bookingReserved()
    await onB.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(sentinel), { qos: 1 })
    const ids = (await received).map((m) => (JSON.parse(m.payload.toString()) as { id: string }).id)
    assert.deepEqual(ids, [event.id, sentinel.id])
    assert.equal(sample(await metricsOf(b), 'ce_broker_events_total', { outcome: 'duplicate' }), 1)
  })

  await t.test('a dead letter made on A (named in its source) is listed, replayed and gone on B', async (t) => {
    const onA = await connect(t, a.mqtt)
    const invalid = bookingReserved({ nights: 'two' })
    await onA.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(invalid), { qos: 1 })
    let listed: { items: Array<{ id: string, record: { source: string, data: { reason: string, topic: string } } }> } = { items: [] }
    for (let i = 0; i < 100 && listed.items.length === 0; i++) {
      listed = await (await fetch(`${b.http}/api/dlq?topic=${encodeURIComponent(BOOKING_RESERVED_TOPIC)}`)).json() as typeof listed
      if (listed.items.length === 0) await sleep(50)
    }
    assert.equal(listed.items.length, 1)
    const [entry] = listed.items
    assert.equal(entry?.record.data.reason, 'schema_validation_failed')
    assert.equal(entry?.record.source, 'ce-broker://node-a', '--node-id names the node in what it writes')
    // replayed as it was, it fails again and stays, with the same id, for every node
    const replay = await fetch(`${b.http}/api/dlq/${entry?.id ?? ''}/replay`, { method: 'POST' })
    assert.equal(replay.status, 422)
    assert.equal((await fetch(`${a.http}/api/dlq/${entry?.id ?? ''}`, { method: 'DELETE' })).status, 204)
    assert.equal((await fetch(`${b.http}/api/dlq/${entry?.id ?? ''}`, { method: 'DELETE' })).status, 404, 'deleted on A, gone on B')
  })

  await t.test('a webhook registered on A gets each event once, whichever node it entered', async (t) => {
    const hook = await receiver(t)
    await register(a, { service_id: 'government-gateway', webhook_url: hook.url, topic_filters: ['albergue/v1/booking/#'], secret: SECRET })
    const onA = await connect(t, a.mqtt)
    const onB = await connect(t, b.mqtt)
    const events = Array.from({ length: 20 }, () => bookingReserved())
    for (const [i, event] of events.entries()) await (i % 2 === 0 ? onA : onB).publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })
    const requests = await hook.next(20, 20_000)
    assert.deepEqual(new Set(requests.map((r) => r.headers['ce-id'])), new Set(events.map((e) => e.id)))
    // a last event: whatever was sent twice would have come by the time it does
    const last = bookingReserved()
    await onA.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(last), { qos: 1 })
    await hook.next(21, 20_000)
    assert.equal(new Set(hook.requests.map((r) => r.headers['ce-id'])).size, hook.requests.length, 'no event was delivered twice')
    const delivered = (sample(await metricsOf(a), 'ce_broker_webhook_deliveries_total', { outcome: 'delivered' }) ?? 0) +
      (sample(await metricsOf(b), 'ce_broker_webhook_deliveries_total', { outcome: 'delivered' }) ?? 0)
    assert.equal(delivered, 21, 'the two nodes together delivered each once')
  })
})

test('kill -9 of the node delivering a webhook: the other node delivers it, with the same webhook-id', { skip }, async (t) => {
  const redis = await startRedis(t)
  // the first request is never answered: its node is killed while it waits
  const hook = await receiver(t, (n, res) => { if (n > 1) res.writeHead(200).end() })
  const env = { CE_BROKER_WEBHOOKS_LOCK_MS: '1000' }
  const a = await startNode(t, redis.url, 'node-a', env)
  await register(a, { service_id: 'government-gateway', webhook_url: hook.url, topic_filters: ['albergue/#'], secret: SECRET, timeoutMs: 60_000 })
  const publisher = await connect(t, a.mqtt)
  const event = bookingReserved()
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })
  const [first] = await hook.next(1)
  // B starts only now: the request in flight is certainly A's
  const b = await startNode(t, redis.url, 'node-b', env)
  publisher.end(true)
  a.cli.child.kill('SIGKILL')
  await a.cli.exited

  const [, second] = await hook.next(2, 30_000)
  assert.equal(second?.headers['ce-id'], event.id)
  assert.equal(second?.headers['webhook-id'], first?.headers['webhook-id'], 'the same webhook-id: the receiver can tell it is the same delivery')
  assert.doesNotThrow(() => new Webhook(SECRET, { format: 'raw' }).verify(second?.body ?? '', second?.headers ?? {}))
  for (let i = 0; i < 100 && sample(await metricsOf(b), 'ce_broker_webhook_deliveries_total', { outcome: 'delivered' }) !== 1; i++) await sleep(50)
  assert.equal(sample(await metricsOf(b), 'ce_broker_webhook_deliveries_total', { outcome: 'delivered' }), 1)
})

test('Redis restarted mid-run: both nodes turn unready and back, a QoS 1 publish waits unacked and is kept, nothing crashes', { skip }, async (t) => {
  const redis = await startRedis(t, { persistent: true })
  const env = { CE_BROKER_REDIS_OUTAGE_HOLD_MS: '60000' }
  const [a, b] = await Promise.all([startNode(t, redis.url, 'node-a', env), startNode(t, redis.url, 'node-b', env)])
  // a persistent session, offline during the outage: what it is owed must be stored
  const away = await connect(t, b.mqtt, { clientId: 'registration-service', clean: false })
  await away.subscribeAsync('hostel/outage/#', { qos: 1 })
  await away.endAsync()
  const publisher = await connect(t, a.mqtt, { clientId: 'booking-desk', keepalive: 0 })

  await redis.kill()
  for (const node of [a, b]) {
    assert.deepEqual(await readiness(node, 503), { status: 'not_ready', checks: { listeners: true, redis: false } })
    await node.cli.waitForLog((line) => line.msg === 'redis unreachable: QoS 1/2 publishes wait, new connections are refused until it is back')
  }
  let acked = false
  const held = publisher.publishAsync('hostel/outage/held', 'sent while redis was away', { qos: 1 }).then(() => { acked = true })
  assert.equal(await refusal(b.mqtt), 3, 'a new connection is told the server is unavailable')
  const http = await fetch(`${b.http}/api/mqtt/publish`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ topic: 'hostel/outage/http', payload: 'x' }) })
  assert.equal(http.status, 503)
  assert.equal(http.headers.get('retry-after'), '1')
  assert.equal((await http.json() as { error: { code: string } }).error.code, 'unavailable')
  assert.equal(acked, false, 'no PUBACK while Redis is away')

  await redis.restart()
  await held
  for (const node of [a, b]) {
    assert.deepEqual(await readiness(node, 200), { status: 'ready', checks: { listeners: true, redis: true } })
    await node.cli.waitForLog((line) => line.msg === 'redis reachable again')
    assert.equal(node.cli.logs.filter((line) => typeof line.msg === 'string' && line.msg.startsWith('redis unreachable')).length, 1, `${node.id} logs the outage once`)
    assert.equal(node.cli.logs.filter((line) => line.msg === 'redis reachable again').length, 1, `${node.id} logs the recovery once`)
    assert.equal(node.cli.child.exitCode, null, `${node.id} is still running`)
  }

  const { message } = await resume(t, a.mqtt, 'registration-service', 'hostel/outage/held')
  assert.equal((await message).payload.toString(), 'sent while redis was away', 'the held publish was stored for the offline session')
  // and routing between the nodes works again
  const onB = await connect(t, b.mqtt)
  await onB.subscribeAsync('hostel/after/#', { qos: 1 })
  const crossing = nextMessage(onB, 'hostel/after/outage')
  await publisher.publishAsync('hostel/after/outage', 'back to normal', { qos: 1 })
  assert.equal((await crossing).payload.toString(), 'back to normal')
})

test('rediss:// with a password and a db: the node uses TLS, authenticates and keeps its state in that db', { skip }, async (t) => {
  const cert = await makeCert(t)
  const redis = await startRedis(t, { tls: { certFile: cert.certFile, keyFile: cert.keyFile }, password: 'pilgrim-s3cret' })
  // the server's certificate is this test's own: trusted the way any Node process trusts a private CA
  const node = await startNode(t, `${redis.url}/3`, 'node-tls', { NODE_EXTRA_CA_CERTS: cert.certFile })
  assert.deepEqual(await readiness(node, 200), { status: 'ready', checks: { listeners: true, redis: true } })
  const client = await connect(t, node.mqtt)
  await client.publishAsync('hostel/tls/status', 'open', { qos: 1, retain: true })

  const direct = new Redis(`${redis.url}/3`, { tls: { ca: cert.cert } })
  defer(t, () => { direct.disconnect() })
  assert.deepEqual(await direct.hkeys('retained'), ['hostel/tls/status'], 'the retained message is in db 3')
  await direct.select(0)
  assert.equal(await direct.exists('retained'), 0, 'and not in db 0')

  // a wrong password is a configuration error: start-up stops and says which setting
  const refused = startCli(t, ['--mqtt-port', '0', '--http-port', '0', '--redis', redis.url.replace('pilgrim-s3cret', 'wrong')], { NODE_EXTRA_CA_CERTS: cert.certFile })
  const exit = await refused.exited
  assert.equal(exit.code, 1)
  assert.match(exit.stderr, /redis\.url is refused by Redis: WRONGPASS/)
  assert.doesNotMatch(exit.stderr + exit.stdout, /wrong@/, 'the password is not printed')
})
