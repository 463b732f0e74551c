/**
 * Ordered delivery per key across a cluster (issue 21, deliverable 1): two node
 * processes on one Redis, a subscription with `ordering: "partitionkey"`, 50 keys x 200
 * events, the receiver refusing (503) the first attempt of some events, and one of the
 * delivering nodes killed (kill -9) mid-run. Each key's events must arrive in the order
 * they were accepted, none lost; a delivery the killed node had made but not recorded
 * may come again (at least once, the same `webhook-id`), and is reported.
 */
import assert from 'node:assert/strict'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { test, type TestContext } from 'node:test'
import mqtt from 'mqtt'
import { kill, skip, startNode } from '../helpers/chaos.js'
import { defer } from '../helpers/cleanup.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved } from '../helpers/events.js'
import { startRedis } from '../helpers/redis.js'

const KEYS = 50
const PER_KEY = 200

/** A receiver recording each 2xx delivery's key and sequence number, in arrival order. */
async function orderReceiver (t: TestContext): Promise<{ url: string, delivered: Array<{ key: string, seq: number }>, refused: () => number }> {
  const delivered: Array<{ key: string, seq: number }> = []
  const attempts = new Set<string>()
  let refused = 0
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume()
    req.on('end', () => {
      const key = String(req.headers['ce-partitionkey'])
      const seq = Number(req.headers['ce-seq'])
      const first = !attempts.has(`${key}/${seq}`)
      attempts.add(`${key}/${seq}`)
      // the first attempt of about one event in 13 is refused: it is retried while its key waits
      if (first && (seq + Number(key.slice(1))) % 13 === 5) {
        refused++
        res.writeHead(503).end()
        return
      }
      delivered.push({ key, seq })
      res.writeHead(200).end()
    })
  })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  defer(t, async () => {
    server.closeAllConnections()
    await new Promise((resolve) => { server.close(resolve) })
  })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`, delivered, refused: () => refused }
}

test('50 keys x 200 events on two nodes, first attempts refused, a delivering node killed mid-run: each key in order, none lost', { skip }, async (t) => {
  const redis = await startRedis(t)
  // the refusals come in bursts across keys: a circuit opening on them would hold every key (and this test) for its 30 s
  const env = { CE_BROKER_WEBHOOKS_BREAKER_FAILURES: '100000' }
  const [a, b] = await Promise.all([startNode(t, redis.url, 'node-a', env), startNode(t, redis.url, 'node-b', env)])
  const hook = await orderReceiver(t)
  const res = await fetch(`${a.http}/api/webhooks`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ service_id: 'ordered', webhook_url: hook.url, topic_filters: ['albergue/#'], ordering: 'partitionkey', retry: { maxAttempts: 20, initialDelayMs: 10, maxDelayMs: 200 } })
  })
  assert.equal(res.status, 201)
  // node B has the subscription (and its worker) before anything is published
  await new Promise((resolve) => setTimeout(resolve, 500))

  // one publisher on node A, the events of every key in turn, each key's in order
  const publisher = mqtt.connect(`mqtt://127.0.0.1:${a.port}`, { clientId: 'ordered-publisher', clean: true })
  defer(t, () => publisher.endAsync(true))
  await new Promise<void>((resolve) => { publisher.once('connect', () => { resolve() }) })
  const total = KEYS * PER_KEY
  const sends: Array<Promise<unknown>> = []
  for (let seq = 0; seq < PER_KEY; seq++) {
    for (let k = 0; k < KEYS; k++) {
      sends.push(publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved({}, { partitionkey: `k${k}`, seq: String(seq) })), { qos: 1 }))
    }
    // node B, delivering too, dies once a fifth of the events are through
    if (seq === PER_KEY / 5) {
      await waitFor(() => hook.delivered.length >= total / 10, 60_000)
      await kill(b)
    }
  }
  await Promise.all(sends)
  const published = hook.delivered.length
  await waitFor(() => new Set(hook.delivered.map((d) => `${d.key}/${d.seq}`)).size >= total, 50_000)

  const firsts = new Map<string, number[]>()
  const seen = new Set<string>()
  let again = 0
  for (const { key, seq } of hook.delivered) {
    if (seen.has(`${key}/${seq}`)) { again++; continue }
    seen.add(`${key}/${seq}`)
    firsts.set(key, [...firsts.get(key) ?? [], seq])
  }
  const inOrder = Array.from({ length: PER_KEY }, (_, i) => i)
  for (let k = 0; k < KEYS; k++) assert.deepEqual(firsts.get(`k${k}`), inOrder, `key k${k} in order, complete`)
  t.diagnostic(`${total} events in ${KEYS} keys: ${hook.refused()} first attempts refused, ${again} delivered again after node B was killed; ${published} delivered when the last publish was acked`)
})

async function waitFor (condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}
