import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import type { Broker } from '../../src/index.js'
import { connect, httpUrl, mqttUrl, startBroker } from '../helpers/broker.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved } from '../helpers/events.js'
import { redisUnavailable, startRedis } from '../helpers/redis.js'

const skip = redisUnavailable() ?? false
const TYPE = 'albergue.v1.booking.reserved'
const BUNDLED = fileURLToPath(new URL('../../schemas/', import.meta.url))

/** The bundled booking.reserved schema with `nights` allowed up to 60 (version 1 allows 30). */
async function looser (): Promise<Record<string, unknown>> {
  const schema: { properties: Record<string, Record<string, unknown>> } & Record<string, unknown> = JSON.parse(await readFile(join(BUNDLED, `${TYPE}.json`), 'utf8'))
  schema.properties.nights = { ...schema.properties.nights, maximum: 60 }
  return schema
}

async function register (node: Broker, schema: unknown): Promise<number> {
  const res = await fetch(httpUrl(node, `/api/schemas/${TYPE}/versions`), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(schema) })
  return res.status
}

/** booking.reserved's latest version as `node` lists it. */
async function latestOn (node: Broker): Promise<number | undefined> {
  const body = await (await fetch(httpUrl(node, '/api/schemas'))).json() as { schemas: Array<{ type: string, version: number }> }
  return body.schemas.find((s) => s.type === TYPE)?.version
}

async function twoNodes (t: TestContext): Promise<[Broker, Broker]> {
  const redis = await startRedis(t)
  const a = await startBroker(t, { nodeId: 'node-a', redis: { url: redis.url } })
  const b = await startBroker(t, { nodeId: 'node-b', redis: { url: redis.url }, validation: { workers: 1 } })
  return [a, b]
}

test('a version registered on node A is in force on node B without a restart, on its validation worker', { skip }, async (t) => {
  const [a, b] = await twoNodes(t)
  assert.equal(await latestOn(b), 1)
  assert.equal(await register(a, await looser()), 201)
  for (let i = 0; i < 200 && await latestOn(b) !== 2; i++) await sleep(25)
  assert.equal(await latestOn(b), 2, 'node B heard of version 2')
  assert.equal(await register(b, await looser()), 200, 'node B finds the same schema registered')

  const subscriber = await connect(t, mqttUrl(b))
  await subscriber.subscribeAsync([BOOKING_RESERVED_TOPIC, '$DLQ/#'])
  const publisher = await connect(t, mqttUrl(b))
  const arrived = new Promise<string>((resolve) => { subscriber.once('message', (topic) => { resolve(topic) }) })
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved({ nights: 45 })), { qos: 1 })
  assert.equal(await arrived, BOOKING_RESERVED_TOPIC)
})

test('a version registered under a steady load: every event is checked against the old version or the new, in order, none lost', { skip }, async (t) => {
  const [a, b] = await twoNodes(t)
  const subscriber = await connect(t, mqttUrl(b))
  await subscriber.subscribeAsync([BOOKING_RESERVED_TOPIC, '$DLQ/#'], { qos: 1 })
  // booking_id carries the sequence number; each event lands in the subscriber's list or the dead letters
  const outcomes = new Map<number, 'accepted' | 'rejected'>()
  let twice = 0
  subscriber.on('message', (topic, payload) => {
    const parsed: { data?: { booking_id?: string, payload?: { data?: { booking_id?: string } } } } = JSON.parse(payload.toString())
    const id = topic === BOOKING_RESERVED_TOPIC ? parsed.data?.booking_id : parsed.data?.payload?.data?.booking_id
    const seq = Number(id?.slice(2))
    if (outcomes.has(seq)) twice++
    outcomes.set(seq, topic === BOOKING_RESERVED_TOPIC ? 'accepted' : 'rejected')
  })
  const publisher = await connect(t, mqttUrl(b))
  let sent = 0
  let registering: Promise<number> | undefined
  let firstAccepted: number | undefined
  // keep publishing until version 2 has been in force for 500 events (bounded)
  while (sent < 20_000 && (firstAccepted === undefined || sent < firstAccepted + 500)) {
    const batch: Array<Promise<unknown>> = []
    for (let i = 0; i < 50; i++) batch.push(publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved({ nights: 45, booking_id: `b-${sent++}` })), { qos: 1 }))
    await Promise.all(batch)
    // registered on node A while the publisher goes on sending to node B
    if (registering === undefined && sent >= 500) registering = looser().then(async (schema) => await register(a, schema))
    firstAccepted ??= [...outcomes].find(([, outcome]) => outcome === 'accepted')?.[0]
  }
  assert.equal(await registering, 201)
  for (let i = 0; i < 400 && outcomes.size < sent; i++) await sleep(25)
  assert.equal(outcomes.size, sent, 'every event delivered or dead-lettered')
  assert.equal(twice, 0, 'no event both delivered and dead-lettered, nor twice')
  const verdicts = [...Array(sent).keys()].map((seq) => outcomes.get(seq))
  const switchAt = verdicts.indexOf('accepted')
  t.diagnostic(`${sent} events, the first ${switchAt} checked against version 1, the rest against version 2`)
  assert.ok(switchAt >= 500, `the first ${switchAt} events were checked against version 1`)
  assert.ok(verdicts.slice(0, switchAt).every((v) => v === 'rejected'), 'before the switch: version 1')
  assert.ok(verdicts.slice(switchAt).every((v) => v === 'accepted'), 'after it: version 2, never version 1 again')
})
