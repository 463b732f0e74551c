/**
 * Webhook concurrency that adapts to the receiver (AIMD), and backpressure from a
 * subscription that is behind to the publishers of its events (issue 21, deliverable 4).
 * Every receiver here is a real HTTP server counting the requests it holds at once.
 */
import assert from 'node:assert/strict'
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { test, type TestContext } from 'node:test'
import type { Broker, BrokerInput } from '../../src/index.js'
import { connect, httpUrl, mqttUrl, sample, startBroker } from '../helpers/broker.js'
import { defer } from '../helpers/cleanup.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved } from '../helpers/events.js'
import { captureLogs } from '../helpers/logs.js'

/** A receiver that records, for each request, how many it held at once when it came (itself included). */
interface CountingReceiver {
  readonly url: string
  /** `ce-id` of each request, in arrival order. */
  readonly ids: string[]
  /** Requests held at once when each request arrived. */
  readonly inFlightAtArrival: number[]
  /** Status answered to each request, in arrival order (0 until answered). */
  readonly statuses: number[]
  /** Resolves once `count` requests were answered 2xx. */
  delivered: (count: number, timeoutMs?: number) => Promise<void>
}

type Answer = (inFlight: number, respond: (status: number) => void) => void

async function countingReceiver (t: TestContext, answer: Answer): Promise<CountingReceiver> {
  const ids: string[] = []
  const inFlightAtArrival: number[] = []
  const statuses: number[] = []
  let inFlight = 0
  let ok = 0
  const waiters: Array<{ count: number, resolve: () => void }> = []
  const server = createServer((req, res: ServerResponse) => {
    inFlight++
    req.resume()
    req.on('end', () => {
      const index = ids.push(String(req.headers['ce-id'])) - 1
      inFlightAtArrival.push(inFlight)
      statuses.push(0)
      answer(inFlight, (status) => {
        inFlight--
        statuses[index] = status
        if (status < 300) ok++
        for (const waiter of waiters.filter((w) => ok >= w.count)) waiter.resolve()
        res.writeHead(status).end()
      })
    })
  })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  defer(t, async () => {
    server.closeAllConnections()
    await new Promise((resolve) => { server.close(resolve) })
  })
  const delivered = async (count: number, timeoutMs = 40_000): Promise<void> => {
    if (ok >= count) return
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error(`${ok} of ${count} requests answered 2xx`)) }, timeoutMs)
      waiters.push({ count, resolve: () => { clearTimeout(timer); resolve() } })
    })
  }
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`, ids, inFlightAtArrival, statuses, delivered }
}

/** Quick retries, and a circuit that does not open: what these tests look at is the concurrency. */
const QUICK: BrokerInput = {
  webhooks: {
    defaults: { retry: { maxAttempts: 50, initialDelayMs: 5, maxDelayMs: 100 }, timeoutMs: 10_000 },
    breaker: { failures: 100_000, halfOpenAfterMs: 1_000 }
  }
}

async function register (broker: Broker, url: string): Promise<string> {
  const res = await fetch(httpUrl(broker, '/api/webhooks'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ service_id: 'adaptive', webhook_url: url, topic_filters: ['albergue/#'] }) })
  assert.equal(res.status, 201)
  return String(((await res.json()) as { id: string }).id)
}

async function listing (broker: Broker): Promise<{ concurrency: number, queued: number, delivered: number }> {
  const body = (await (await fetch(httpUrl(broker, '/api/webhooks'))).json()) as { subscriptions: Array<{ concurrency: number, queued: number, delivered: number }> }
  const [first] = body.subscriptions
  assert.ok(first !== undefined)
  return first
}

/** Publish `n` events at QoS 0 as fast as the client writes them; their ids in order. */
async function burst (t: TestContext, broker: Broker, n: number): Promise<string[]> {
  const publisher = await connect(t, mqttUrl(broker))
  const ids: string[] = []
  for (let i = 0; i < n; i++) {
    const event = bookingReserved()
    ids.push(String(event.id))
    publisher.publish(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 0 })
  }
  return ids
}

test('a fast receiver: the subscription\'s concurrency grows past where it starts (8), and every event arrives once', async (t) => {
  const broker = await startBroker(t, QUICK)
  // a few ms per answer: the burst comes faster than 8 at a time can take it
  const hook = await countingReceiver(t, (_n, respond) => { setTimeout(() => { respond(200) }, 5) })
  await register(broker, hook.url)
  const ids = await burst(t, broker, 600)
  await hook.delivered(600)
  assert.deepEqual(new Set(hook.ids), new Set(ids))
  assert.equal(hook.ids.length, 600)
  // fixed at 8 before: never more than 8 held at once
  assert.ok(Math.max(...hook.inFlightAtArrival) > 8, `at most ${Math.max(...hook.inFlightAtArrival)} requests at once`)
  const { concurrency } = await listing(broker)
  assert.ok(concurrency > 8, `the subscription's limit is ${concurrency}`)
  const metrics = await (await fetch(httpUrl(broker, '/metrics'))).text()
  assert.ok((sample(metrics, 'ce_broker_webhook_concurrency') ?? 0) > 8)
})

test('a receiver that takes 4 at once (503 beyond) is held near 4: fewer refused attempts than events, every event arrives once', async (t) => {
  const broker = await startBroker(t, QUICK)
  const hook = await countingReceiver(t, (inFlight, respond) => { if (inFlight > 4) respond(503); else setTimeout(() => { respond(200) }, 10) })
  await register(broker, hook.url)
  const ids = await burst(t, broker, 300)
  await hook.delivered(300)
  assert.deepEqual(new Set(hook.ids.filter((_id, i) => hook.statuses[i] === 200)), new Set(ids))
  const refused = hook.statuses.filter((s) => s === 503).length
  // at a fixed 8 (the default before) 1,000-1,600 attempts were refused here, each retried; adapting, 110-120
  assert.ok(refused < ids.length, `${refused} attempts refused for ${ids.length} events`)
})

test('a receiver slower than webhooks.defaults.latencyTargetMs is not flooded: one request at a time once it has shown it', async (t) => {
  const broker = await startBroker(t, { webhooks: { ...QUICK.webhooks, defaults: { ...QUICK.webhooks?.defaults, latencyTargetMs: 20 } } })
  const hook = await countingReceiver(t, (_n, respond) => { setTimeout(() => { respond(200) }, 60) })
  await register(broker, hook.url)
  const ids = await burst(t, broker, 60)
  await hook.delivered(60)
  assert.deepEqual(new Set(hook.ids), new Set(ids))
  // the first 8 go at once (where every subscription starts); each slow answer cuts the limit by a tenth, down to 1
  const late = hook.inFlightAtArrival.slice(40)
  assert.deepEqual([...new Set(late)], [1], `held at once when requests 41-60 came: ${late.join(' ')}`)
})

test('a subscription that is behind slows its MQTT publishers (QoS 1 acks wait) and answers HTTP senders 429 with Retry-After; released, nothing is lost', async (t) => {
  const broker = await startBroker(t, { webhooks: { ...QUICK.webhooks, intake: { highWater: 20, holdMs: 60_000 } } })
  const held: Array<() => void> = []
  let holding = true
  const hook = await countingReceiver(t, (_n, respond) => { if (holding) held.push(() => { respond(200) }); else respond(200) })
  await register(broker, hook.url)
  const publisher = await connect(t, mqttUrl(broker))
  const ids: string[] = []
  let acked = 0
  const acks: Array<Promise<unknown>> = []
  for (let i = 0; i < 60; i++) {
    const event = bookingReserved()
    ids.push(String(event.id))
    acks.push(publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 }).then(() => { acked++ }))
  }
  // the receiver holds what it got (the subscription's first 8): the queue fills to the high-water mark and stops there
  await waitFor(() => acked >= 20 && held.length >= 8)
  await new Promise((resolve) => setTimeout(resolve, 500))
  assert.ok(acked <= 21, `${acked} of 60 publishes acked while the subscription was behind`)
  const http = await fetch(httpUrl(broker, '/api/events'), { method: 'POST', headers: { 'content-type': 'application/cloudevents+json' }, body: JSON.stringify(bookingReserved()) })
  assert.equal(http.status, 429)
  assert.equal(http.headers.get('retry-after'), '1')
  assert.equal(((await http.json()) as { error: { code: string } }).error.code, 'too_many_requests')
  const metrics = await (await fetch(httpUrl(broker, '/metrics'))).text()
  assert.ok((sample(metrics, 'ce_broker_webhook_intake_total', { outcome: 'held' }) ?? 0) >= 1)
  assert.equal(sample(metrics, 'ce_broker_webhook_intake_total', { outcome: 'refused' }), 1)

  holding = false
  for (const release of held.splice(0)) release()
  await Promise.all(acks)
  await hook.delivered(60)
  assert.deepEqual(new Set(hook.ids), new Set(ids))
  const after = await (await fetch(httpUrl(broker, '/metrics'))).text()
  assert.equal(sample(after, 'ce_broker_webhook_deliveries_total', { outcome: 'queue_full' }) ?? 0, 0)
})

test('a broker closing while it holds publishes for a subscription that is behind closes in time (aedes does not wait for the holds)', async (t) => {
  const { logger, lines } = captureLogs('warn')
  const broker = await startBroker(t, { logger, webhooks: { ...QUICK.webhooks, intake: { highWater: 5, holdMs: 600_000 } } })
  const held: Array<() => void> = []
  const hook = await countingReceiver(t, (_n, respond) => { held.push(() => { respond(200) }) })
  defer(t, () => { for (const release of held.splice(0)) release() })
  await register(broker, hook.url)
  const publisher = await connect(t, mqttUrl(broker))
  let acked = 0
  for (let i = 0; i < 20; i++) void publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved()), { qos: 1 }).then(() => { acked++ }, () => {})
  await waitFor(() => acked >= 5 && held.length >= 5)
  await broker.close()
  // held publishes are no client's handling aedes waits for: it closes them without reaching its own 5 s bound
  assert.deepEqual(lines.filter((line) => String(line.msg).startsWith('aedes did not close in time')), [])
})

async function waitFor (condition: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}
