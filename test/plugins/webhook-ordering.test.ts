/**
 * Ordered delivery per key (issue 21, deliverable 1), embedded (test/cluster/webhook-ordering.test.ts:
 * with Redis, a node killed mid-run): a subscription with
 * `ordering: "partitionkey"` (or `"subject"`) gets the events of one key one at a time,
 * in the order the broker accepted them, while other keys keep flowing.
 */
import assert from 'node:assert/strict'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { test, type TestContext } from 'node:test'
import type { Broker } from '../../src/index.js'
import { connect, httpUrl, mqttUrl, startBroker } from '../helpers/broker.js'
import { defer } from '../helpers/cleanup.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved } from '../helpers/events.js'

/** One request as the receiver saw it, and what it answered. */
interface Seen {
  readonly key: string
  readonly seq: number
  readonly status: number
}

/** A receiver answering each request with `status(request, attempt of that event)`, recording what it answered, in order. */
async function orderReceiver (t: TestContext, status: (key: string, seq: number, attempt: number, res: ServerResponse) => number | undefined): Promise<{ url: string, seen: Seen[], delivered: (n: number) => Promise<void> }> {
  const seen: Seen[] = []
  const attempts = new Map<string, number>()
  const waiters: Array<{ n: number, resolve: () => void }> = []
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume()
    req.on('end', () => {
      const key = String(req.headers['ce-partitionkey'] ?? req.headers['ce-subject'])
      const seq = Number(req.headers['ce-seq'])
      const attempt = (attempts.get(`${key}/${seq}`) ?? 0) + 1
      attempts.set(`${key}/${seq}`, attempt)
      const answer = status(key, seq, attempt, res) ?? 200
      seen.push({ key, seq, status: answer })
      res.writeHead(answer).end()
      const ok = seen.filter((s) => s.status < 300).length
      for (const waiter of waiters.filter((w) => ok >= w.n)) waiter.resolve()
    })
  })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  defer(t, async () => {
    server.closeAllConnections()
    await new Promise((resolve) => { server.close(resolve) })
  })
  const delivered = async (n: number): Promise<void> => {
    if (seen.filter((s) => s.status < 300).length >= n) return
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error(`${seen.filter((s) => s.status < 300).length} of ${n} delivered`)) }, 40_000)
      waiters.push({ n, resolve: () => { clearTimeout(timer); resolve() } })
    })
  }
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`, seen, delivered }
}

const QUICK = { webhooks: { defaults: { retry: { maxAttempts: 10, initialDelayMs: 5, maxDelayMs: 50 } }, breaker: { failures: 100_000, halfOpenAfterMs: 1_000 } } }

async function register (broker: Broker, url: string, ordering: string): Promise<Response> {
  return await fetch(httpUrl(broker, '/api/webhooks'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ service_id: 'ordered', webhook_url: url, topic_filters: ['albergue/#'], ordering }) })
}

/**
 * Publish `events` at QoS 1 on one connection, all at once (MQTT keeps one connection's
 * order, and so does the broker's acceptance): many of a key are queued together.
 */
async function publishInOrder (t: TestContext, broker: Broker, events: ReadonlyArray<{ key: string, seq: number }>, attribute = 'partitionkey'): Promise<void> {
  const publisher = await connect(t, mqttUrl(broker))
  await Promise.all(events.map(async ({ key, seq }) => await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved({}, { [attribute]: key, seq: String(seq) })), { qos: 1 })))
}

/** Each key's delivered sequence numbers, in the order they were delivered. */
function deliveredByKey (seen: readonly Seen[]): Map<string, number[]> {
  const byKey = new Map<string, number[]>()
  for (const { key, seq, status } of seen) if (status < 300) byKey.set(key, [...byKey.get(key) ?? [], seq])
  return byKey
}

test('ordering by partitionkey: 10 keys x 30 events, the first attempt of some refused (503): each key arrives complete, in order, once', async (t) => {
  const broker = await startBroker(t, QUICK)
  const hook = await orderReceiver(t, (_key, seq, attempt) => seq % 7 === 3 && attempt === 1 ? 503 : undefined)
  assert.equal((await register(broker, hook.url, 'partitionkey')).status, 201)
  const keys = Array.from({ length: 10 }, (_, i) => `k${i}`)
  const events = Array.from({ length: 30 }, (_, seq) => keys.map((key) => ({ key, seq }))).flat()
  await publishInOrder(t, broker, events)
  await hook.delivered(events.length)
  const byKey = deliveredByKey(hook.seen)
  const inOrder = Array.from({ length: 30 }, (_, i) => i)
  for (const key of keys) assert.deepEqual(byKey.get(key), inOrder, `key ${key}`)
  assert.ok(hook.seen.some((s) => s.status === 503), 'some first attempts were refused')
})

test('while one key\'s event waits for its retry, later events of that key wait and other keys keep flowing', async (t) => {
  const broker = await startBroker(t, QUICK)
  // the first event of "slow" is refused once, with Retry-After: 1 s
  const hook = await orderReceiver(t, (key, seq, attempt, res) => {
    if (key !== 'slow' || seq !== 0 || attempt !== 1) return undefined
    res.setHeader('retry-after', '1')
    return 503
  })
  assert.equal((await register(broker, hook.url, 'subject')).status, 201)
  const events = [{ key: 'slow', seq: 0 }, { key: 'slow', seq: 1 }, ...Array.from({ length: 20 }, (_, seq) => ({ key: 'fast', seq }))]
  await publishInOrder(t, broker, events, 'subject')
  await hook.delivered(events.length)
  const order = hook.seen.filter((s) => s.status < 300).map((s) => `${s.key}${s.seq}`)
  const slowFirst = order.indexOf('slow0')
  assert.ok(slowFirst > order.indexOf('fast19'), `fast went on while slow0 waited: ${order.join(' ')}`)
  assert.equal(order.indexOf('slow1'), slowFirst + 1, `slow1 only after slow0: ${order.join(' ')}`)
})

test('a key whose event is dead-lettered moves on: the next event of the key is delivered, the dead letter names the subscription', async (t) => {
  const broker = await startBroker(t, QUICK)
  const hook = await orderReceiver(t, (key, seq) => key === 'doomed' && seq === 0 ? 400 : undefined)
  assert.equal((await register(broker, hook.url, 'partitionkey')).status, 201)
  await publishInOrder(t, broker, [{ key: 'doomed', seq: 0 }, { key: 'doomed', seq: 1 }, { key: 'doomed', seq: 2 }])
  await hook.delivered(2)
  assert.deepEqual(deliveredByKey(hook.seen).get('doomed'), [1, 2])
  const dlq = (await (await fetch(httpUrl(broker, '/api/dlq'))).json()) as { items: Array<{ record: { data: { reason: string } } }> }
  assert.deepEqual(dlq.items.map((i) => i.record.data.reason), ['delivery_failed'])
})
