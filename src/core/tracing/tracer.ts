import { ROOT_CONTEXT, SpanKind, SpanStatusCode, createTraceState, trace, type Attributes, type Context, type Span, type Tracer } from '@opentelemetry/api'
import type { TracingConfig } from '../config/index.js'
import type { PluginTracing, PublishAttempt, PublishVerdict, TraceCarrier } from '../context.js'
import { REJECT_REASONS, toBrokerError, type EventSummary } from '../errors.js'
import { createExporting } from './export.js'
import { formatTraceparent, parseTraceparent, tracestateProblem } from './trace-context.js'
import type { Tracing, TracingSource } from './types.js'

/** A step of a publish's check, as a plugin noted it (`PluginTracing.step`). */
interface Step {
  readonly name: string
  readonly startedAt: number
  readonly endedAt: number
  readonly failure: unknown
}

/** One publish on its way through the pipeline: when it came in, its steps, then its spans. */
interface PublishTrace {
  readonly startedAt: number
  steps: Step[] | undefined
  receive: Span | undefined
  route: Span | undefined
}

/** Refusals that are about the event itself: its `receive` span is made even when nothing described the event. */
const EVENT_REASONS: ReadonlySet<string> = new Set([...REJECT_REASONS, 'duplicate'])

/**
 * The spans of an event, in the OpenTelemetry messaging and CloudEvents conventions:
 * - `receive` (CONSUMER, `messaging.operation.type` `process`): the broker processing the
 *   PUBLISH, from the moment it entered the pipeline to its verdict. Its parent is the
 *   event's `traceparent` when valid (the publisher's PRODUCER or create span, as the
 *   CloudEvents distributed-tracing extension carries it); else it starts a trace.
 * - the steps plugins note (`validate`), children of `receive`, with their own times;
 * - `route` (INTERNAL), child of `receive`: aedes routing the accepted message, from
 *   its verdict to the `published` hook (retained store, offline queues, subscribers);
 * - what plugins start later in the context of `receive` (webhook deliveries).
 * Spans are made once the publish is decided, with the times noted on the way: the
 * parent is only known once the event has been read, maybe on a validation worker.
 */
export function createTracing (config: TracingConfig & { readonly otlpUrl: string }, source: TracingSource): Tracing {
  const exporting = createExporting(config, source)
  const tracer = exporting.provider.getTracer('ce-broker', source.version)
  /** The trace of each publish in the pipeline, by its attempt and by its packet: what a step, the verdict and `published` find it by. */
  const traces = new WeakMap<object, PublishTrace>()

  const plugin: PluginTracing = {
    tracer,
    step (attempt, name, startedAt, failure) {
      const record = traces.get(attempt)
      if (record === undefined) return
      (record.steps ??= []).push({ name, startedAt, endedAt: performance.now(), failure })
    },
    context: (carried, remote) => contextOf(carried.traceparent, carried.tracestate, remote)
  }

  function decided (attempt: PublishAttempt, verdict: PublishVerdict): void {
    const record = traces.get(attempt)
    if (record === undefined) return
    traces.delete(attempt)
    const event = attempt.event ?? verdict?.event
    if (attempt.event === undefined && (verdict === undefined || !EVENT_REASONS.has(verdict.reason))) return
    const receive = tracer.startSpan('receive', { kind: SpanKind.CONSUMER, startTime: record.startedAt, attributes: receiveAttributes(attempt, event) }, eventContext(event))
    const inReceive = trace.setSpan(ROOT_CONTEXT, receive)
    for (const step of record.steps ?? []) {
      const span = tracer.startSpan(step.name, { kind: SpanKind.INTERNAL, startTime: step.startedAt }, inReceive)
      if (step.failure !== undefined) failed(span, step.failure)
      span.end(step.endedAt)
    }
    if (verdict !== undefined) {
      failed(receive, verdict)
      receive.end()
      return
    }
    receive.end()
    record.receive = receive
    record.route = tracer.startSpan('route', { kind: SpanKind.INTERNAL, attributes: { 'messaging.system': 'mqtt', 'messaging.destination.name': attempt.topic } }, inReceive)
  }

  function routed (packet: object): TraceCarrier | undefined {
    const record = traces.get(packet)
    if (record === undefined) return undefined
    traces.delete(packet)
    const { receive, route } = record
    if (receive === undefined || route === undefined) return undefined
    route.end()
    const context = receive.spanContext()
    const tracestate = context.traceState?.serialize()
    const traceparent = formatTraceparent(context.traceId, context.spanId, context.traceFlags)
    return tracestate === undefined || tracestate === '' ? { traceparent } : { traceparent, tracestate }
  }

  return {
    plugin,
    begin (packet, attempt) {
      const record: PublishTrace = { startedAt: performance.now(), steps: undefined, receive: undefined, route: undefined }
      traces.set(attempt, record)
      traces.set(packet, record)
    },
    decided,
    routed,
    register: exporting.register,
    shutdown: async () => { await exporting.provider.shutdown() }
  }
}

/** The attributes of a `receive` span: the messaging conventions' and the CloudEvents conventions'. */
function receiveAttributes (attempt: PublishAttempt, event: EventSummary | undefined): Attributes {
  const attributes: Attributes = {
    'messaging.system': 'mqtt',
    'messaging.destination.name': attempt.topic,
    'messaging.operation.type': 'process',
    'messaging.operation.name': 'receive',
    'messaging.message.body.size': attempt.payload.length,
    'ce_broker.origin': attempt.origin
  }
  if (attempt.clientId !== null) attributes['messaging.client.id'] = attempt.clientId
  if (event?.id !== undefined) attributes['cloudevents.event_id'] = event.id
  if (event?.type !== undefined) attributes['cloudevents.event_type'] = event.type
  if (event?.source !== undefined) attributes['cloudevents.event_source'] = event.source
  if (event?.schemaVersion !== undefined) attributes['ce_broker.schema_version'] = event.schemaVersion
  return attributes
}

/** The context an event's `receive` span starts in: under its `traceparent` when that is valid (with its `tracestate` when that is valid too), else none. */
function eventContext (event: EventSummary | undefined): Context {
  return (event === undefined ? undefined : contextOf(event.traceparent, event.tracestate, true)) ?? ROOT_CONTEXT
}

/** The context whose span `traceparent` names, or `undefined` when it is not a valid one. */
function contextOf (traceparent: unknown, tracestate: unknown, remote: boolean): Context | undefined {
  const parsed = parseTraceparent(traceparent)
  if (parsed === undefined) return undefined
  const traceState = typeof tracestate === 'string' && tracestateProblem(tracestate) === undefined ? createTraceState(tracestate) : undefined
  return trace.setSpanContext(ROOT_CONTEXT, { traceId: parsed.traceId, spanId: parsed.parentId, traceFlags: parsed.flags, isRemote: remote, ...(traceState === undefined ? {} : { traceState }) })
}

/** Mark a span failed: error status with the error's message, `error.type` its reason code (`schema_validation_failed`, `duplicate`, …). */
function failed (span: Span, failure: unknown): void {
  const err = toBrokerError(failure)
  span.setAttribute('error.type', err.reason)
  span.setStatus({ code: SpanStatusCode.ERROR, message: err.message })
}
