/**
 * The receiving side of the client library against a real broker: `verifyWebhook` on
 * Node's http, express and fastify, and `createWebhookHandler` answering as the broker's
 * retries expect, running each event's handler once with a processed-id store.
 */
import assert from 'node:assert/strict'
import { createHmac } from 'node:crypto'
import { createServer, type IncomingMessage, type RequestListener } from 'node:http'
import type { AddressInfo } from 'node:net'
import { test, type TestContext } from 'node:test'
import express from 'express'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import { Webhook } from 'standardwebhooks'
import {
  createWebhookHandler, memoryProcessedStore, redisProcessedStore, verifyWebhook, WebhookVerificationError, type ProcessedStore
} from '../../client/index.js'
import type { Events } from '../../examples/events.js'
import { connect, httpUrl, mqttUrl, startBroker } from '../helpers/broker.js'
import { defer } from '../helpers/cleanup.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved } from '../helpers/events.js'
import { redisUnavailable, startRedis } from '../helpers/redis.js'
import type { Broker } from '../../src/index.js'

const SECRET = 'albergue-notification-secret'

async function serve (t: TestContext, listener: RequestListener): Promise<string> {
  const server = createServer(listener)
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  defer(t, async () => {
    server.closeAllConnections()
    await new Promise((resolve) => { server.close(resolve) })
  })
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`
}

async function subscribe (broker: Broker, url: string, extra: Record<string, unknown> = {}): Promise<void> {
  const reply = await fetch(httpUrl(broker, '/api/webhooks'), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ service_id: 'notification', webhook_url: url, topic_filters: ['albergue/#'], secret: SECRET, ...extra })
  })
  assert.equal(reply.status, 201, await reply.text())
}

async function publish (broker: Broker, t: TestContext, events: ReadonlyArray<Record<string, unknown>>): Promise<void> {
  const publisher = await connect(t, mqttUrl(broker))
  for (const event of events) await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })
}

/** Resolves with the first `count` values pushed. */
function collector<T> (count: number): { push: (value: T) => void, all: Promise<T[]> } {
  const values: T[] = []
  let done: (values: T[]) => void = () => {}
  const all = new Promise<T[]>((resolve) => { done = resolve })
  return { push: (value) => { if (values.push(value) === count) done(values) }, all }
}

test('verifyWebhook returns the CloudEvent of a signed delivery, binary and structured, from Node\'s http', async (t) => {
  const broker = await startBroker(t, { webhooks: { denyNetworks: [] } })
  const seen = collector<{ mode: string, id: string, type: string, data: unknown }>(2)
  const url = await serve(t, (req, res) => {
    verifyWebhook(req, SECRET).then((event) => {
      seen.push({ mode: String(req.url), id: event.id, type: event.type, data: event.data })
      res.writeHead(204).end()
    }, () => { res.writeHead(401).end() })
  })
  await subscribe(broker, `${url}?binary`)
  await subscribe(broker, `${url}?structured`, { mode: 'structured' })
  const event = bookingReserved()
  await publish(broker, t, [event])
  const got = (await seen.all).sort((a, b) => a.mode.localeCompare(b.mode))
  assert.deepEqual(got, [
    { mode: '/hooks?binary', id: event.id, type: event.type, data: event.data },
    { mode: '/hooks?structured', id: event.id, type: event.type, data: event.data }
  ])
})

test('a tampered body, another secret or no signature is a WebhookVerificationError; a parsed body is refused with how to keep it raw', async () => {
  const body = JSON.stringify(bookingReserved())
  const signer = new Webhook(SECRET, { format: 'raw' })
  const now = new Date()
  const headers = {
    'content-type': 'application/cloudevents+json',
    'webhook-id': 'msg_1',
    'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
    'webhook-signature': signer.sign('msg_1', now, body)
  }
  assert.equal((await verifyWebhook({ headers, body }, SECRET)).type, 'albergue.v1.booking.reserved')
  await assert.rejects(verifyWebhook({ headers, body: body.replace('"nights":1', '"nights":9') }, SECRET), WebhookVerificationError)
  await assert.rejects(verifyWebhook({ headers, body }, 'another-secret-entirely'), WebhookVerificationError)
  await assert.rejects(verifyWebhook({ headers: { 'content-type': 'application/cloudevents+json' }, body }, SECRET), WebhookVerificationError)
  await assert.rejects(verifyWebhook({ headers, body: JSON.parse(body) }, SECRET), /express\.raw/)
})

test('binary mode: data that is no JSON (data_base64 bytes, text) verifies and arrives as published', async (t) => {
  const broker = await startBroker(t, { webhooks: { denyNetworks: [] }, validation: { rules: [{ match: 'albergue/v1/media/#', schema: 'none' }] } })
  const seen = collector<{ type: string, data: unknown } | { refused: string }>(2)
  const url = await serve(t, (req, res) => {
    verifyWebhook(req, SECRET).then((event) => {
      seen.push({ type: event.type, data: event.data })
      res.writeHead(204).end()
    }, (err: unknown) => {
      // answered 400, final: the broker goes on to the next event, and the test reads what was refused
      seen.push({ refused: String(err) })
      res.writeHead(400).end()
    })
  })
  await subscribe(broker, url, { topic_filters: ['albergue/v1/media/#'] })
  const bytes = Buffer.from([0xff, 0x00, 0xfe, 0x41])
  const envelope = { specversion: '1.0', source: '/albergue/media-service' }
  const publisher = await connect(t, mqttUrl(broker))
  await publisher.publishAsync('albergue/v1/media/uploaded', JSON.stringify({ ...envelope, id: 'm-1', type: 'albergue.v1.media.uploaded', datacontenttype: 'application/octet-stream', data_base64: bytes.toString('base64') }), { qos: 1 })
  await publisher.publishAsync('albergue/v1/media/captioned', JSON.stringify({ ...envelope, id: 'm-2', type: 'albergue.v1.media.captioned', datacontenttype: 'text/plain', data: 'a pilgrim at O Cebreiro' }), { qos: 1 })
  const got = (await seen.all).sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)))
  assert.deepEqual(got, [
    { type: 'albergue.v1.media.captioned', data: 'a pilgrim at O Cebreiro' },
    { type: 'albergue.v1.media.uploaded', data: bytes }
  ])
})

test('a binary body is signed and verified over its bytes: a receiver checking the bytes accepts it, and one byte that is no UTF-8 changed for another is refused', async (t) => {
  const broker = await startBroker(t, { webhooks: { denyNetworks: [] }, validation: { rules: [{ match: 'albergue/v1/media/#', schema: 'none' }] } })
  const arrived = collector<{ headers: Record<string, string>, body: Buffer }>(1)
  const url = await serve(t, (req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => { chunks.push(chunk) })
    req.on('end', () => {
      arrived.push({ headers: Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)])), body: Buffer.concat(chunks) })
      res.writeHead(204).end()
    })
  })
  await subscribe(broker, url, { topic_filters: ['albergue/v1/media/#'] })
  const bytes = Buffer.from([0xff, 0x00, 0xfe, 0x41])
  const publisher = await connect(t, mqttUrl(broker))
  await publisher.publishAsync('albergue/v1/media/uploaded', JSON.stringify({ specversion: '1.0', source: '/albergue/media-service', id: 'm-9', type: 'albergue.v1.media.uploaded', datacontenttype: 'application/octet-stream', data_base64: bytes.toString('base64') }), { qos: 1 })
  const [{ headers, body } = { headers: {}, body: Buffer.alloc(0) }] = await arrived.all
  assert.deepEqual(body, bytes)
  // Standard Webhooks' scheme, computed here from the bytes received
  const expected = createHmac('sha256', Buffer.from(SECRET, 'latin1')).update(`${headers['webhook-id']}.${headers['webhook-timestamp']}.`).update(body).digest('base64')
  assert.equal(headers['webhook-signature'], `v1,${expected}`)
  assert.deepEqual((await verifyWebhook({ headers, body }, SECRET)).data, bytes)
  await assert.rejects(verifyWebhook({ headers, body: Buffer.from([0xfe, 0x00, 0xfe, 0x41]) }, SECRET), WebhookVerificationError)
})

test('typed handlers behind express and fastify: each event reaches the handler of its type; an unknown type is 200, or 410 if asked', async (t) => {
  const broker = await startBroker(t, { webhooks: { denyNetworks: [] } })
  const received = collector<string>(2)
  const onExpress = createWebhookHandler<Events>({ secret: SECRET })
    .on('albergue.v1.booking.reserved', (event) => { received.push(`express ${event.data.booking_id} ${event.data.nights}`) })
  const onFastify = createWebhookHandler<Events>({ secret: SECRET, unknownTypes: 'gone' })
    .on('albergue.v1.booking.reserved', async (event) => { received.push(`fastify ${event.data.booking_id} ${event.data.nights}`) })

  const app = express()
  app.post('/hooks', express.raw({ type: '*/*' }), onExpress.express)
  const expressUrl = await serve(t, app)
  const fastify = Fastify()
  await fastify.register(async (scope) => {
    // the signature is over the bytes: this scope keeps every body raw, JSON included
    scope.removeAllContentTypeParsers()
    scope.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => { done(null, body) })
    scope.post('/hooks', onFastify.fastify)
  })
  await fastify.listen({ port: 0, host: '127.0.0.1' })
  defer(t, () => fastify.close())
  const fastifyUrl = `http://127.0.0.1:${(fastify.server.address() as AddressInfo).port}/hooks`

  await subscribe(broker, expressUrl)
  await subscribe(broker, fastifyUrl)
  await publish(broker, t, [bookingReserved()])
  assert.deepEqual((await received.all).sort(), ['express b-1001 1', 'fastify b-1001 1'])

  // a type nobody handles, signed as the broker signs
  const other = JSON.stringify({ ...bookingReserved(), type: 'albergue.v1.booking.expired' })
  const now = new Date()
  const signed = { 'content-type': 'application/cloudevents+json', 'webhook-id': 'msg_2', 'webhook-timestamp': String(Math.floor(now.getTime() / 1000)), 'webhook-signature': new Webhook(SECRET, { format: 'raw' }).sign('msg_2', now, other) }
  assert.equal((await fetch(expressUrl, { method: 'POST', headers: signed, body: other })).status, 200)
  assert.equal((await fetch(fastifyUrl, { method: 'POST', headers: signed, body: other })).status, 410)
  assert.equal((await fetch(fastifyUrl, { method: 'POST', headers: { ...signed, 'webhook-signature': 'v1,AAAA' }, body: other })).status, 401)
})

/**
 * The broker delivers at least once: a handler slower than the subscription's timeout
 * sees its event again while it runs (answered 503, retried) and after it finished
 * (answered 200 without running). The handler ran once.
 */
async function runsOnce (t: TestContext, stores: readonly ProcessedStore[]): Promise<void> {
  const broker = await startBroker(t, { webhooks: { denyNetworks: [] } })
  const runs: string[] = []
  const statuses: number[] = []
  let release: () => void = () => {}
  const held = new Promise<void>((resolve) => { release = resolve })
  // two answers of 2xx end it either way: with a store, the held run's own (its attempt timed out at the broker) and a
  // later attempt's "processed before"; without one, two runs' answers
  const delivered = collector<number>(2)
  const urls: string[] = []
  for (const store of stores) {
    const handler = createWebhookHandler<Events>({ secret: SECRET, store })
      .on('albergue.v1.booking.reserved', async (event) => {
        // a second run (no store, or one that failed to hold the event) ends the wait too, and the test then fails on it
        if (runs.push(event.id) > 1) release()
        await held
      })
    urls.push(await serve(t, (req: IncomingMessage, res) => {
      handler.handle(req).then((a) => {
        statuses.push(a.status)
        // the second attempt found the event being handled: let the first one finish
        if (a.status === 503) release()
        res.writeHead(a.status, a.headers).end(a.body)
        if (a.status < 300) delivered.push(a.status)
      }, () => { res.writeHead(500).end() })
    }))
  }
  // one subscription; replicas behind it take turns (the first attempt reaches the first one)
  let turn = 0
  const front = await serve(t, (req, res) => {
    const target = urls[turn++ % urls.length] ?? ''
    fetch(target, { method: 'POST', headers: Object.fromEntries(Object.entries(req.headers).filter(([k]) => k !== 'host' && k !== 'content-length').map(([k, v]) => [k, String(v)])), body: req, duplex: 'half' } as RequestInit)
      .then(async (r) => { res.writeHead(r.status).end(await r.text()) }, () => { res.writeHead(502).end() })
  })
  await subscribe(broker, front, { timeoutMs: 500, retry: { maxAttempts: 10, initialDelayMs: 50, maxDelayMs: 200 } })
  const event = bookingReserved()
  await publish(broker, t, [event])
  await delivered.all
  assert.deepEqual(runs, [event.id], 'the handler ran once')
  assert.ok(statuses.includes(503), `a delivery found it running: ${statuses.join(', ')}`)
  assert.ok(statuses.includes(200), `a later delivery was answered without running: ${statuses.join(', ')}`)
}

test('with a memory store a redelivered event runs its handler once', async (t) => {
  await runsOnce(t, [memoryProcessedStore()])
})

test('with a Redis store two replicas of the service run an event once between them', { skip: redisUnavailable() ?? false }, async (t) => {
  const redis = await startRedis(t)
  const connections = [new Redis(redis.url), new Redis(redis.url)]
  defer(t, () => { for (const c of connections) c.disconnect() })
  await runsOnce(t, connections.map((c) => redisProcessedStore(c)))
})
