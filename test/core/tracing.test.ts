import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import type { MqttClient } from 'mqtt'
import type { Broker, BrokerInput } from '../../src/index.js'
import { connect, httpUrl, mqttUrl, nextMessage, startBroker } from '../helpers/broker.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved } from '../helpers/events.js'
import { OTLP_KIND, OTLP_STATUS, otlpCollector, type Collector, type ExportedSpan } from '../helpers/otlp.js'
import { receiver, type Receiver } from '../helpers/receiver.js'

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736'
const PUBLISHER_SPAN = '00f067aa0ba902b7'
const TRACEPARENT = `00-${TRACE_ID}-${PUBLISHER_SPAN}-01`
const TRACESTATE = 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7'

interface Setup {
  readonly broker: Broker
  readonly collector: Collector
  readonly hook: Receiver
  readonly publisher: MqttClient
}

/** A broker exporting to a collector of its own (quickly: 20 ms), with one webhook subscription on the booking topics and a publisher. */
async function tracedBroker (t: TestContext, input: BrokerInput = {}): Promise<Setup> {
  const collector = await otlpCollector(t)
  const hook = await receiver(t)
  const broker = await startBroker(t, { ...input, tracing: { otlpUrl: collector.url, exportDelayMs: 20, ...input.tracing } })
  await subscribe(broker, hook)
  const publisher = await connect(t, mqttUrl(broker), { clientId: 'booking-service' })
  return { broker, collector, hook, publisher }
}

async function subscribe (broker: Broker, hook: Receiver): Promise<void> {
  const res = await fetch(httpUrl(broker, '/api/webhooks'), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ service_id: 'government-gateway', webhook_url: hook.url, topic_filters: ['albergue/v1/booking/#'] })
  })
  assert.equal(res.status, 201)
}

/** The spans of the event `eventId`, by name, once `names` have all arrived: its receive span and every span of its trace below it. */
async function spansOf (collector: Collector, eventId: string, names: readonly string[]): Promise<Map<string, ExportedSpan>> {
  const byName = (spans: readonly ExportedSpan[]): Map<string, ExportedSpan> => {
    const receive = spans.find((s) => s.name === 'receive' && s.attributes['cloudevents.event_id'] === eventId)
    const found = new Map<string, ExportedSpan>()
    if (receive === undefined) return found
    found.set('receive', receive)
    for (const span of spans) if (span.traceId === receive.traceId && span.parentSpanId === receive.spanId) found.set(span.name, span)
    return found
  }
  return byName(await collector.waitFor((spans) => names.every((name) => byName(spans).has(name))))
}

function must<T> (value: T | undefined, what: string): T {
  assert.ok(value !== undefined, `${what} is missing`)
  return value
}

test('an event\'s spans arrive over OTLP/HTTP: receive continues the publisher\'s span, validate (on a worker), route and the webhook POST are its children; the webhook\'s traceparent names the POST span', async (t) => {
  const { collector, hook, publisher } = await tracedBroker(t, { validation: { workers: 1 } })
  const event = bookingReserved({}, { traceparent: TRACEPARENT, tracestate: TRACESTATE })
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })

  const [request] = await hook.next(1)
  const headers = must(request, 'the webhook request').headers
  assert.equal(headers['ce-traceparent'], TRACEPARENT, 'the event attribute goes as published')
  const sent = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(headers.traceparent ?? '')
  assert.ok(sent !== null, `an HTTP traceparent header in the event's trace: ${headers.traceparent}`)
  assert.equal(sent[1], TRACE_ID)
  assert.notEqual(sent[2], PUBLISHER_SPAN)
  assert.equal(headers.tracestate, TRACESTATE)

  const spans = await spansOf(collector, String(event.id), ['receive', 'validate', 'route', 'POST'])
  const receive = must(spans.get('receive'), 'receive')
  assert.equal(receive.traceId, TRACE_ID)
  assert.equal(receive.parentSpanId, PUBLISHER_SPAN, 'receive is the child of the publisher\'s span')
  assert.equal(receive.kind, OTLP_KIND.consumer)
  assert.equal(receive.traceState, TRACESTATE)
  assert.deepEqual(receive.status, { code: OTLP_STATUS.unset })
  assert.equal(receive.resource['service.name'], 'ce-broker')
  assert.equal(receive.attributes['messaging.system'], 'mqtt')
  assert.equal(receive.attributes['messaging.destination.name'], BOOKING_RESERVED_TOPIC)
  assert.equal(receive.attributes['messaging.operation.type'], 'process')
  assert.equal(receive.attributes['messaging.client.id'], 'booking-service')
  assert.equal(receive.attributes['cloudevents.event_id'], event.id)
  assert.equal(receive.attributes['cloudevents.event_type'], event.type)
  assert.equal(receive.attributes['cloudevents.event_source'], event.source)

  const validate = must(spans.get('validate'), 'validate')
  assert.equal(validate.kind, OTLP_KIND.internal)
  assert.equal(must(spans.get('route'), 'route').kind, OTLP_KIND.internal)
  const post = must(spans.get('POST'), 'POST')
  assert.equal(post.kind, OTLP_KIND.client)
  assert.equal(post.spanId, sent[2], 'the header names the delivery span')
  assert.equal(post.attributes['http.request.method'], 'POST')
  assert.equal(post.attributes['url.full'], hook.url)
  assert.equal(post.attributes['http.response.status_code'], 200)
  assert.equal(post.attributes['cloudevents.event_id'], event.id)
  assert.equal(post.attributes['messaging.destination.name'], BOOKING_RESERVED_TOPIC)
})

test('a malformed traceparent: the event is accepted, its audit record says so, its webhook gets no traceparent header and its receive span starts a trace of its own', async (t) => {
  const { broker, collector, hook, publisher } = await tracedBroker(t)
  const auditor = await connect(t, mqttUrl(broker))
  await auditor.subscribeAsync('$audit/#')
  const zeros = '00-00000000000000000000000000000000-b7ad6b7169203331-01'
  const event = bookingReserved({}, { traceparent: zeros, tracestate: TRACESTATE })
  const audited = nextMessage(auditor)
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })

  const record = JSON.parse((await audited).payload.toString()) as Record<string, unknown>
  assert.equal(record.outcome, 'accepted')
  assert.equal(record.trace, 'malformed traceparent: trace-id is all zeros')
  const [request] = await hook.next(1)
  const headers = must(request, 'the webhook request').headers
  assert.equal(headers.traceparent, undefined, 'not propagated')
  assert.equal(headers.tracestate, undefined)
  assert.equal(headers['ce-traceparent'], zeros, 'the attribute goes as published')

  const spans = await spansOf(collector, String(event.id), ['receive', 'POST'])
  const receive = must(spans.get('receive'), 'receive')
  assert.equal(receive.parentSpanId, '', 'no parent: a trace of its own')
  assert.notEqual(receive.traceId, '00000000000000000000000000000000')
  assert.equal(receive.traceState, '')

  // a valid traceparent with a malformed tracestate: the trace goes on, the tracestate does not
  const second = bookingReserved({}, { traceparent: TRACEPARENT, tracestate: 'congo=1,congo=2' })
  const auditedSecond = nextMessage(auditor)
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(second), { qos: 1 })
  const secondRecord = JSON.parse((await auditedSecond).payload.toString()) as Record<string, unknown>
  assert.equal(secondRecord.trace, 'malformed tracestate: list-member 2 repeats the key of an earlier one')
  const [, secondRequest] = await hook.next(2)
  const secondHeaders = must(secondRequest, 'the second webhook request').headers
  assert.match(secondHeaders.traceparent ?? '', new RegExp(`^00-${TRACE_ID}-[0-9a-f]{16}-01$`))
  assert.equal(secondHeaders.tracestate, undefined)
  assert.equal(secondHeaders['ce-tracestate'], 'congo=1,congo=2')
})

test('a refused event: its receive span ends with an error status and the reason as error.type, and so does its validate span; nothing routes it', async (t) => {
  const { broker, collector, publisher } = await tracedBroker(t, { validation: { workers: 0 } })
  const event = bookingReserved({ nights: 0 }, { traceparent: TRACEPARENT })
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })

  const spans = await spansOf(collector, String(event.id), ['receive', 'validate'])
  const receive = must(spans.get('receive'), 'receive')
  assert.equal(receive.parentSpanId, PUBLISHER_SPAN)
  assert.equal(receive.status.code, OTLP_STATUS.error)
  assert.equal(receive.attributes['error.type'], 'schema_validation_failed')
  const validate = must(spans.get('validate'), 'validate')
  assert.equal(validate.status.code, OTLP_STATUS.error)
  assert.equal(validate.attributes['error.type'], 'schema_validation_failed')
  // closing exports every span left: the trace has no route span
  await broker.close()
  assert.deepEqual(collector.spans.filter((s) => s.traceId === TRACE_ID).map((s) => s.name).sort(), ['receive', 'validate'])
})

test('over HTTP, ce-traceparent is the parent of the receive span; the POST\'s own traceparent header is not the event\'s', async (t) => {
  const { broker, collector, hook } = await tracedBroker(t)
  const withAttribute = bookingReserved()
  const res = await fetch(httpUrl(broker, '/api/events'), {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'ce-specversion': '1.0', 'ce-id': String(withAttribute.id), 'ce-source': String(withAttribute.source), 'ce-type': String(withAttribute.type), 'ce-traceparent': TRACEPARENT },
    body: JSON.stringify(withAttribute.data)
  })
  assert.equal(res.status, 202)
  const onlyHeader = bookingReserved()
  const other = `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01`
  assert.equal((await fetch(httpUrl(broker, '/api/events'), { method: 'POST', headers: { 'content-type': 'application/cloudevents+json', traceparent: other }, body: JSON.stringify(onlyHeader) })).status, 202)

  const first = must((await spansOf(collector, String(withAttribute.id), ['receive', 'POST'])).get('receive'), 'receive')
  assert.equal(first.parentSpanId, PUBLISHER_SPAN)
  assert.equal(first.attributes['ce_broker.origin'], 'http')
  const second = must((await spansOf(collector, String(onlyHeader.id), ['receive', 'POST'])).get('receive'), 'receive')
  assert.equal(second.parentSpanId, '')
  assert.notEqual(second.traceId, 'a'.repeat(32))
  const requests = await hook.next(2)
  const byId = new Map(requests.map((r) => [r.headers['ce-id'], r.headers]))
  assert.match(byId.get(String(withAttribute.id))?.traceparent ?? '', new RegExp(`^00-${TRACE_ID}-`))
  assert.equal(byId.get(String(onlyHeader.id))?.traceparent, undefined)
})

test('tracing off: no exporter is started even with OTEL_EXPORTER_OTLP_TRACES_ENDPOINT set, plugins see no tracing, and the webhook carries the publisher\'s traceparent and tracestate unchanged', async (t) => {
  const collector = await otlpCollector(t)
  const before = process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
  process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = collector.url
  t.after(() => {
    if (before === undefined) delete process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
    else process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = before
  })
  const hook = await receiver(t)
  let seen: unknown = 'not loaded'
  const broker = await startBroker(t, { plugins: [{ name: 'looks-at-tracing', dependsOn: [], start: async (ctx) => { seen = ctx.tracing; return undefined } }] })
  assert.equal(seen, undefined, 'ctx.tracing is undefined when tracing.otlpUrl is not set')
  await subscribe(broker, hook)
  const publisher = await connect(t, mqttUrl(broker))
  const spaced = ` ${TRACESTATE} `
  const event = bookingReserved({}, { traceparent: TRACEPARENT, tracestate: spaced })
  const later = bookingReserved({}, { traceparent: `cc-${TRACE_ID}-${PUBLISHER_SPAN}-01-what-the-future-will-be-like` })
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(later), { qos: 1 })

  const requests = await hook.next(2)
  const byId = new Map(requests.map((r) => [r.headers['ce-id'], r.headers]))
  assert.equal(byId.get(String(event.id))?.traceparent, TRACEPARENT, 'the publisher\'s, unchanged')
  assert.equal(byId.get(String(event.id))?.tracestate, TRACESTATE, 'the publisher\'s, without the space around it')
  assert.equal(byId.get(String(later.id))?.traceparent, TRACEPARENT, 'a later version goes on as version 00, as the spec asks')
  assert.equal(byId.get(String(later.id))?.['ce-traceparent'], later.traceparent)
  const metrics = await (await fetch(httpUrl(broker, '/metrics'))).text()
  assert.doesNotMatch(metrics, /ce_broker_trace_spans_total/)
  await broker.close()
  assert.equal(collector.requests(), 0, 'nothing was exported, not even when closing')
})
