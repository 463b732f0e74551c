import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { Broker } from '../../src/index.js'
import { connect, httpUrl, mqttUrl, sample, startBroker } from '../helpers/broker.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved } from '../helpers/events.js'
import { OTLP_KIND, otlpCollector } from '../helpers/otlp.js'
import { receiver } from '../helpers/receiver.js'
import { redisUnavailable, startRedis } from '../helpers/redis.js'

const TRACE_ID = '0af7651916cd43dd8448eb211c80319c'
const TRACEPARENT = `00-${TRACE_ID}-b7ad6b7169203331-01`

/** `ce_broker_trace_spans_total` by outcome, read from the broker's registry (also once it is closed). */
async function spanCounts (broker: Broker): Promise<{ exported: number, failed: number, dropped: number }> {
  const text = await broker.metrics.metrics()
  const count = (outcome: string): number => sample(text, 'ce_broker_trace_spans_total', { outcome }) ?? -1
  return { exported: count('exported'), failed: count('failed'), dropped: count('dropped') }
}

test('with Redis, the delivery job carries the receive span through the shared queue: the webhook POST span is its child', { skip: redisUnavailable() ?? false }, async (t) => {
  const redis = await startRedis(t)
  const collector = await otlpCollector(t)
  const hook = await receiver(t)
  const broker = await startBroker(t, { redis: { url: redis.url }, tracing: { otlpUrl: collector.url, exportDelayMs: 20 } })
  const res = await fetch(httpUrl(broker, '/api/webhooks'), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ service_id: 'government-gateway', webhook_url: hook.url, topic_filters: ['albergue/v1/booking/#'] })
  })
  assert.equal(res.status, 201)
  const publisher = await connect(t, mqttUrl(broker))
  const event = bookingReserved({}, { traceparent: TRACEPARENT })
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })

  const [request] = await hook.next(1)
  const spans = await collector.waitFor((got) => got.some((s) => s.name === 'POST' && s.traceId === TRACE_ID) && got.some((s) => s.name === 'receive' && s.traceId === TRACE_ID))
  const receive = spans.find((s) => s.name === 'receive' && s.traceId === TRACE_ID)
  const post = spans.find((s) => s.name === 'POST' && s.traceId === TRACE_ID)
  assert.ok(receive !== undefined && post !== undefined)
  assert.equal(receive.parentSpanId, 'b7ad6b7169203331')
  assert.equal(post.parentSpanId, receive.spanId, 'the delivery span is the child of receive, across the queue in Redis')
  assert.equal(post.kind, OTLP_KIND.client)
  assert.equal(request?.headers.traceparent, `00-${TRACE_ID}-${post.spanId}-01`)
})

test('spans that find tracing.maxQueueSize spans waiting (the collector hangs) are dropped and counted', async (t) => {
  const collector = await otlpCollector(t, { hold: true })
  // a refused event's two spans (receive, validate) end before its PUBACK: what is counted is known once the acks are in
  const broker = await startBroker(t, { validation: { workers: 0 }, tracing: { otlpUrl: collector.url, maxQueueSize: 2, maxExportBatchSize: 2, exportDelayMs: 60_000 } })
  const publisher = await connect(t, mqttUrl(broker))
  for (let i = 0; i < 4; i++) await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved({ nights: 0 })), { qos: 1 })
  // the first event's spans are out in the export the collector holds, the second's wait, the others find no room
  assert.equal((await spanCounts(broker)).dropped, 4)
  collector.release()
  await broker.close()
  assert.deepEqual(await spanCounts(broker), { exported: 4, failed: 0, dropped: 4 })
})

test('spans the collector refuses are counted failed; closing the broker exports what is left', async (t) => {
  const collector = await otlpCollector(t, { status: 400 })
  const broker = await startBroker(t, { validation: { workers: 0 }, tracing: { otlpUrl: collector.url, exportDelayMs: 60_000 } })
  const publisher = await connect(t, mqttUrl(broker))
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved({ nights: 0 })), { qos: 1 })
  await broker.close()
  assert.deepEqual(await spanCounts(broker), { exported: 0, failed: 2, dropped: 0 })
  assert.deepEqual(collector.spans.map((s) => s.name).sort(), ['receive', 'validate'])
})

test('tracing.sampleRatio 0: a trace the broker would start is not recorded; an event\'s own sampled flag decides for its spans, and its webhook says what was decided', async (t) => {
  const collector = await otlpCollector(t)
  const hook = await receiver(t)
  const broker = await startBroker(t, { tracing: { otlpUrl: collector.url, sampleRatio: 0, exportDelayMs: 60_000 } })
  const res = await fetch(httpUrl(broker, '/api/webhooks'), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ service_id: 'government-gateway', webhook_url: hook.url, topic_filters: ['albergue/v1/booking/#'] })
  })
  assert.equal(res.status, 201)
  const publisher = await connect(t, mqttUrl(broker))
  const rootless = bookingReserved()
  const sampled = bookingReserved({}, { traceparent: TRACEPARENT })
  const unsampledTrace = '11111111111111111111111111111111'
  const unsampled = bookingReserved({}, { traceparent: `00-${unsampledTrace}-b7ad6b7169203331-00` })
  for (const event of [rootless, sampled, unsampled]) await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })
  const requests = await hook.next(3)
  const byId = new Map(requests.map((r) => [r.headers['ce-id'], r.headers]))
  assert.match(byId.get(String(sampled.id))?.traceparent ?? '', new RegExp(`^00-${TRACE_ID}-[0-9a-f]{16}-01$`))
  assert.match(byId.get(String(unsampled.id))?.traceparent ?? '', new RegExp(`^00-${unsampledTrace}-[0-9a-f]{16}-00$`), 'not recorded: flags 00, a span id of ours all the same')
  await broker.close()
  const recorded = new Set(collector.spans.filter((s) => s.name === 'receive').map((s) => s.attributes['cloudevents.event_id']))
  assert.deepEqual([...recorded], [sampled.id])
  assert.ok(collector.spans.every((s) => s.traceId === TRACE_ID), 'only the sampled event\'s trace was exported')
})
