/**
 * The gateway interceptor, as a fastify plugin and as an express middleware, between a
 * real HTTP client and the backend routes of a real gateway app, publishing to a real
 * broker that a real `mqtt` subscriber listens to: the client's response carries no
 * events, the subscriber gets them, and the broker never fails the client's request.
 */
import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import { context } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { BasicTracerProvider } from '@opentelemetry/sdk-trace-base'
import { createPublisher, PublishUnansweredError, type CloudEventJson, type GatewayOptions, type GatewayOutcomeReport, type Publisher } from '../../client/index.js'
import { definePlugin, type Broker, type PluginEntry } from '../../src/index.js'
import { collectMessages, connect, mqttUrl, startBroker, type Received } from '../helpers/broker.js'
import { defer } from '../helpers/cleanup.js'
import { bookingReserved, parseRecord } from '../helpers/events.js'
import { ask, startGateway, type Answer, type Framework, type Gateway, type Tracing } from '../helpers/gateway.js'
import { captureLogs } from '../helpers/logs.js'

const CANCELLED = 'albergue.v1.booking.cancelled'
const CANCELLED_DATA = { booking_id: 'b-1001', reason: 'pilgrim_request', cancelled_at: '2026-04-30T20:00:00Z' }
const SOURCE = '/albergue/gateway'

/** A partial event as a backend returns it: type, data, and what it chooses to name. */
function cancelled (id: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { type: CANCELLED, data: CANCELLED_DATA, subject: 'b-1001', id, ...extra }
}

function parsed (messages: readonly Received[]): CloudEventJson[] {
  return messages.map((m) => JSON.parse(String(m.payload)) as CloudEventJson)
}

/** Publishes held by the broker until `release()`: a broker answering slowly, decided by the test, not by a clock. */
function holdingGate (): { plugin: PluginEntry, hold: () => void, release: () => void } {
  let held: Promise<void> | undefined
  let release = (): void => {}
  const gate = definePlugin('hold-cancellations', async (ctx) => {
    ctx.hooks.authorizePublish(async function holdWhileAsked (attempt) {
      if (attempt.topic === 'albergue/v1/booking/cancelled' && held !== undefined) await held
    })
  })
  return {
    plugin: gate(),
    hold: () => { held = new Promise((resolve) => { release = resolve }) },
    release: () => { held = undefined; release() }
  }
}

async function publisherFor (t: TestContext, broker: Broker, clientId: string, timeoutMs?: number): Promise<Publisher> {
  const publisher = await createPublisher({ url: mqttUrl(broker), clientId, source: SOURCE, ...(timeoutMs === undefined ? {} : { timeoutMs }) })
  defer(t, () => publisher.close())
  return publisher
}

async function subscribe (t: TestContext, broker: Broker, topic = 'albergue/#'): Promise<Awaited<ReturnType<typeof connect>>> {
  const subscriber = await connect(t, mqttUrl(broker))
  await subscriber.subscribeAsync(topic, { qos: 1 })
  return subscriber
}

function outcomes (gateway: Gateway): Record<string, number> {
  return Object.fromEntries(Object.entries(gateway.events.stats()).filter(([, n]) => n !== 0))
}

const manager = new AsyncLocalStorageContextManager().enable()
context.setGlobalContextManager(manager)
test.after(() => { context.disable() })

for (const framework of ['fastify', 'express'] as const satisfies readonly Framework[]) {
  test(`${framework}: the gateway interceptor`, async (t) => {
    const gate = holdingGate()
    const broker = await startBroker(t, { plugins: [gate.plugin] })
    const publisher = await publisherFor(t, broker, `gateway-${framework}`)
    const gateway = async (st: TestContext, options: Partial<GatewayOptions> = {}, tracing?: Tracing): Promise<Gateway> => await startGateway(st, framework, { publisher, ...options }, tracing)

    await t.test('the client gets the response without the events; the subscriber gets them, the header\'s first', async (st) => {
      const subscriber = await subscribe(st, broker)
      const arriving = collectMessages(subscriber, framework === 'fastify' ? 5 : 4)
      const reserved = bookingReserved({}, { id: `reserved-${framework}` })
      const gw = await gateway(st)
      const modes: Answer[] = ['return', 'send', 'text']
      for (const [i, as] of modes.entries()) {
        const answer = await ask(gw, { status: 201, as, header: JSON.stringify([reserved]), body: { data: { booking_id: 'b-1001' }, events: [cancelled(`c-${framework}-${i}`)], links: { self: '/bookings/b-1001' } } })
        assert.equal(answer.status, 201, as)
        assert.deepEqual(JSON.parse(answer.text), { data: { booking_id: 'b-1001' }, links: { self: '/bookings/b-1001' } }, as)
        assert.equal(answer.headers.get('x-cloudevents'), null, as)
        assert.equal(answer.headers.get('x-backend'), 'kept', as)
        assert.equal(answer.headers.get('content-length'), String(Buffer.byteLength(answer.text)), as)
      }
      if (framework === 'fastify') {
        // a route's response schema would drop `events` when serializing: they are taken before
        const schemed = await ask(gw, { body: { data: 'schemed', events: [cancelled(`c-${framework}-schema`)] } }, {}, '/with-schema')
        assert.deepEqual(JSON.parse(schemed.text), { data: 'schemed' })
      }
      await gw.events.settled()
      const events = parsed(await arriving)
      // the same complete event three times: the broker took it once, and said duplicate twice
      const schemed = framework === 'fastify' ? [`c-${framework}-schema`] : []
      assert.deepEqual(events.map((e) => e.id), [`reserved-${framework}`, `c-${framework}-0`, `c-${framework}-1`, `c-${framework}-2`, ...schemed])
      assert.deepEqual(events[0], reserved, 'a complete CloudEvent is published as it is')
      assert.deepEqual({ ...events[1], time: undefined }, { specversion: '1.0', id: `c-${framework}-0`, source: SOURCE, type: CANCELLED, time: undefined, datacontenttype: 'application/json', subject: 'b-1001', data: CANCELLED_DATA })
      assert.deepEqual(outcomes(gw), { published: 4 + schemed.length, duplicates: 2 })
    })

    await t.test('the response does not wait for the broker', async (st) => {
      const subscriber = await subscribe(st, broker)
      const arriving = collectMessages(subscriber, 1)
      const seen: string[] = []
      const gw = await gateway(st, { onOutcome: (report) => { seen.push(report.outcome) } })
      gate.hold()
      const answer = await ask(gw, { body: { data: null, events: [cancelled(`held-${framework}`)] } })
      seen.push(`response ${answer.status}`)
      assert.deepEqual(gw.events.stats().inFlight, 1, 'the publish is still under way when the client has its response')
      gate.release()
      await gw.events.settled()
      assert.deepEqual(seen, ['response 200', 'published'])
      assert.deepEqual(parsed(await arriving).map((e) => e.id), [`held-${framework}`])
      assert.equal(gw.events.stats().inFlight, 0)
    })

    await t.test('an event the broker refuses: the client still gets its answer; counted rejected, logged, not fallen back', async (st) => {
      const subscriber = await subscribe(st, broker)
      const arriving = collectMessages(subscriber, 1)
      const dlq = await subscribe(st, broker, '$DLQ/#')
      const deadLettered = collectMessages(dlq, 1)
      const { logger, lines } = captureLogs('warn')
      const fellBack: CloudEventJson[] = []
      const gw = await gateway(st, { log: logger, fallback: (event) => { fellBack.push(event) } })
      const invalid = { type: 'albergue.v1.booking.reserved', data: { ...(bookingReserved().data as object), nights: 0 }, id: `bad-${framework}` }
      const answer = await ask(gw, { body: { data: 'ok', events: [invalid, cancelled(`good-${framework}`)] } })
      assert.equal(answer.status, 200)
      assert.deepEqual(JSON.parse(answer.text), { data: 'ok' })
      await gw.events.settled()
      assert.deepEqual(outcomes(gw), { published: 1, rejected: 1 })
      assert.deepEqual(fellBack, [])
      assert.deepEqual(parsed(await arriving).map((e) => e.id), [`good-${framework}`])
      const record = parseRecord((await deadLettered)[0]?.payload ?? Buffer.alloc(0))
      assert.equal(record.data.reason, 'schema_validation_failed')
      assert.deepEqual(lines.map((l) => [l.level, l.outcome, l.eventId]), [[40, 'rejected', `bad-${framework}`]])
      assert.match(String((lines[0]?.err as { message?: string } | undefined)?.message), /\/data\/nights: must be >= 1/)
    })

    await t.test('malformed headers and entries are skipped and counted; the response is intact', async (st) => {
      const subscriber = await subscribe(st, broker)
      const arriving = collectMessages(subscriber, 1)
      const { logger, lines } = captureLogs('warn')
      const gw = await gateway(st, { log: logger, logIntervalMs: 0, maxHeaderBytes: 512 })
      const entries = ['a string', { data: 1 }, { type: 7 }, { type: CANCELLED, specversion: '1.0', source: '/x' }, cancelled('x', { subject: 3 }), cancelled(`fine-${framework}`)]
      const first = await ask(gw, { header: 'not json', body: { data: [1, 2], events: entries } })
      assert.deepEqual([first.status, JSON.parse(first.text), first.headers.get('x-cloudevents')], [200, { data: [1, 2] }, null])
      const notAnArray = await ask(gw, { header: JSON.stringify(cancelled('y')), body: { data: 1 } })
      assert.deepEqual([notAnArray.status, JSON.parse(notAnArray.text), notAnArray.headers.get('x-cloudevents')], [200, { data: 1 }, null])
      const tooBig = await ask(gw, { header: JSON.stringify([cancelled('z', { padding: 'p'.repeat(600) })]), body: { data: 2 } })
      assert.deepEqual([tooBig.status, JSON.parse(tooBig.text), tooBig.headers.get('x-cloudevents')], [200, { data: 2 }, null])
      // `events` that is no array, or without `data` beside it, is the API's own payload: left alone
      const theirs = [{ data: 3, events: 'none' }, { events: [cancelled('w')] }]
      for (const body of theirs) assert.deepEqual(JSON.parse((await ask(gw, { body })).text), body)
      await gw.events.settled()
      assert.deepEqual(outcomes(gw), { published: 1, malformed: 7, oversized: 1 })
      assert.deepEqual(parsed(await arriving).map((e) => e.id), [`fine-${framework}`])
      assert.deepEqual(lines.map((l) => l.detail), [
        'X-CloudEvents header is no JSON array: "not json"',
        'event entry is no object: "a string"',
        'event entry\'s "type" is undefined, not a non-empty string',
        'event entry\'s "type" is 7, not a non-empty string',
        'complete CloudEvent of type "albergue.v1.booking.cancelled": "id" is undefined, not a non-empty string',
        'event of type "albergue.v1.booking.cancelled": "subject" is 3, not a non-empty string',
        `X-CloudEvents header is no JSON array: ${JSON.stringify(JSON.stringify(cancelled('y'))).slice(0, 77)}...`,
        `X-CloudEvents header of ${JSON.stringify([cancelled('z', { padding: 'p'.repeat(600) })]).length} bytes, past maxHeaderBytes (512): not parsed`
      ])
    })

    await t.test('past maxEvents, the rest of a response\'s events are dropped and counted; a JSON body past maxBodyBytes is sent on unread', async (st) => {
      const subscriber = await subscribe(st, broker)
      const arriving = collectMessages(subscriber, 3)
      const { logger, lines } = captureLogs('warn')
      const gw = await gateway(st, { log: logger, maxEvents: 3, maxBodyBytes: 2048 })
      const ids = [0, 1, 2, 3, 4].map((i) => `many-${framework}-${i}`)
      const answer = await ask(gw, { header: JSON.stringify([cancelled(ids[0] ?? '')]), body: { data: 'many', events: ids.slice(1).map((id) => cancelled(id)) } })
      assert.deepEqual(JSON.parse(answer.text), { data: 'many' })
      const big = { data: 'p'.repeat(3000), events: [cancelled(`big-${framework}`)] }
      assert.deepEqual(JSON.parse((await ask(gw, { as: 'text', body: big })).text), big, 'a body too big to parse keeps its events')
      await gw.events.settled()
      assert.deepEqual(parsed(await arriving).map((e) => e.id), ids.slice(0, 3))
      assert.deepEqual(outcomes(gw), { published: 3, dropped: 2, oversized: 1 })
      assert.deepEqual(lines.map((l) => [l.outcome, l.count]), [['dropped', 2], ['oversized', undefined]])
    })

    await t.test('a streamed body is sent on as it is, its header still read; with body: false, only the header is', async (st) => {
      const subscriber = await subscribe(st, broker)
      const arriving = collectMessages(subscriber, 2)
      const streamed = await gateway(st)
      const body = { data: 'streamed', events: [cancelled('in-the-stream')] }
      const answer = await ask(streamed, { as: 'stream', header: JSON.stringify([cancelled(`streamed-${framework}`)]), body })
      assert.deepEqual([answer.status, JSON.parse(answer.text), answer.headers.get('x-cloudevents'), answer.headers.get('x-backend')], [200, body, null, 'kept'])
      const headerOnly = await gateway(st, { body: false })
      const second = await ask(headerOnly, { header: JSON.stringify([cancelled(`header-only-${framework}`)]), body })
      assert.deepEqual([JSON.parse(second.text), second.headers.get('x-cloudevents')], [body, null])
      await Promise.all([streamed.events.settled(), headerOnly.events.settled()])
      assert.deepEqual(parsed(await arriving).map((e) => e.id), [`streamed-${framework}`, `header-only-${framework}`])
    })

    await t.test('an event built at the gateway carries the request\'s span as its traceparent; a complete one keeps its own', async (st) => {
      const subscriber = await subscribe(st, broker)
      const arriving = collectMessages(subscriber, 2)
      const tracing: Tracing = { tracer: new BasicTracerProvider().getTracer('gateway'), spans: [] }
      const gw = await gateway(st, {}, tracing)
      const own = bookingReserved({}, { id: `own-trace-${framework}`, traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' })
      const incoming = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
      await ask(gw, { header: JSON.stringify([own]), body: { data: 1, events: [cancelled(`traced-${framework}`)] } }, { traceparent: incoming })
      await gw.events.settled()
      const [kept, built] = parsed(await arriving)
      const span = tracing.spans[0]
      assert.equal(span?.traceId, '4bf92f3577b34da6a3ce929d0e0e4736', 'the gateway\'s span continues the incoming trace')
      assert.equal(built?.traceparent, `00-${span?.traceId ?? ''}-${span?.spanId ?? ''}-01`)
      assert.equal(kept?.traceparent, own.traceparent)
    })

    await t.test('options out of bounds are refused when the interceptor is created', async (st) => {
      await assert.rejects(gateway(st, { maxEvents: 0 }), /"maxEvents" must be a positive integer, got 0/)
    })

    // last: it stops the broker the others share
    await t.test('the broker stopped: the client gets its answer; what the broker did not answer goes to the fallback', async (st) => {
      const { logger, lines } = captureLogs('warn')
      const impatient = await publisherFor(st, broker, `gateway-${framework}-impatient`, 300)
      const fellBack: Array<{ id: string, type: string, source: string, why: string }> = []
      const reports: GatewayOutcomeReport[] = []
      const fallback = (event: CloudEventJson, error: Error): void => {
        if (event.subject === 'lost') throw new Error('outbox unreachable')
        assert.ok(error instanceof PublishUnansweredError)
        fellBack.push({ id: event.id, type: event.type, source: event.source, why: /maxInFlight/.test(error.message) ? 'maxInFlight' : 'no answer' })
      }
      const gw = await startGateway(st, framework, { publisher: impatient, fallback, log: logger, onOutcome: (r) => { reports.push(r) } })
      const bounded = await startGateway(st, framework, { publisher: impatient, fallback, maxInFlight: 1 })
      const without = await startGateway(st, framework, { publisher: impatient, log: logger })
      await broker.close()
      const reserved = bookingReserved({}, { id: `r-${framework}` })
      const answer = await ask(gw, { header: JSON.stringify([reserved]), body: { data: 'saved', events: [cancelled(`c-${framework}`), cancelled(`l-${framework}`, { subject: 'lost' })] } })
      assert.deepEqual([answer.status, JSON.parse(answer.text), answer.headers.get('x-cloudevents')], [200, { data: 'saved' }, null])
      assert.equal((await ask(bounded, { body: { data: 1, events: [cancelled(`b1-${framework}`), cancelled(`b2-${framework}`)] } })).status, 200)
      assert.equal((await ask(without, { body: { data: 1, events: [cancelled(`gone-${framework}`)] } })).status, 200)
      await Promise.all([gw, bounded, without].map(async (g) => { await g.events.settled() }))

      assert.deepEqual(fellBack.sort((a, b) => a.id.localeCompare(b.id)), [
        { id: `b1-${framework}`, type: CANCELLED, source: SOURCE, why: 'no answer' },
        { id: `b2-${framework}`, type: CANCELLED, source: SOURCE, why: 'maxInFlight' },
        { id: `c-${framework}`, type: CANCELLED, source: SOURCE, why: 'no answer' },
        { id: `r-${framework}`, type: reserved.type, source: reserved.source, why: 'no answer' }
      ])
      assert.deepEqual(outcomes(gw), { failed: 3, fellBack: 2, fallbackFailed: 1 })
      assert.deepEqual(outcomes(bounded), { failed: 2, fellBack: 2 })
      assert.deepEqual(outcomes(without), { failed: 1 })
      assert.deepEqual(reports.filter((r) => r.outcome !== 'failed').map((r) => [r.outcome, r.event?.id]).sort(), [['fallbackFailed', `l-${framework}`], ['fellBack', `c-${framework}`], ['fellBack', `r-${framework}`]])
      const lost = lines.filter((l) => l.level === 50).map((l) => [l.eventId, l.msg])
      assert.deepEqual(lost.sort(), [
        [`gone-${framework}`, 'gateway interceptor: the broker did not answer and there is no fallback: event lost'],
        [`l-${framework}`, 'gateway interceptor: the broker did not answer and the fallback failed: event lost']
      ])
    })
  })
}
