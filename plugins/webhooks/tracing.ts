import { ROOT_CONTEXT, SpanKind, SpanStatusCode, type Attributes, type Span } from '@opentelemetry/api'
import { formatTraceparent, propagatedTraceContext, type PluginTracing, type TraceCarrier } from '../../src/core/index.js'
import type { AttemptResult } from './exchange.js'
import type { DeliveryTracing, Job } from './delivery.js'

/**
 * Each HTTP attempt of a delivery is a CLIENT span (the HTTP conventions: `POST`,
 * `http.request.method`, `url.full`, `server.*`, `http.response.status_code`,
 * `error.type`, `http.request.resend_count` from the second attempt), child of the event's
 * `receive` span, which the job carries, through Redis too. A job that carries none (a
 * redelivered dead letter, a journal replay) continues the event's own `traceparent`.
 * The request's `traceparent` header names this span in the event's trace; an event
 * without a valid trace context gets no header (its webhook starts no trace of ours).
 */
export function deliveryTracing (tracing: PluginTracing): DeliveryTracing {
  return function startAttempt (job) {
    const own = propagatedTraceContext(job.event.traceparent, job.event.tracestate)
    const parent = (job.trace === undefined ? undefined : tracing.context(job.trace, false)) ??
      (own === undefined ? undefined : tracing.context(own, true)) ?? ROOT_CONTEXT
    const span = tracing.tracer.startSpan('POST', { kind: SpanKind.CLIENT, attributes: attemptAttributes(job) }, parent)
    return { headers: own === undefined ? undefined : headersOf(span), end: (result) => { ended(span, result) } }
  }
}

function headersOf (span: Span): TraceCarrier {
  const context = span.spanContext()
  const traceparent = formatTraceparent(context.traceId, context.spanId, context.traceFlags)
  const tracestate = context.traceState?.serialize()
  return tracestate === undefined || tracestate === '' ? { traceparent } : { traceparent, tracestate }
}

function attemptAttributes (job: Job): Attributes {
  const url = new URL(job.subscription.webhook_url)
  const attributes: Attributes = {
    'http.request.method': 'POST',
    'url.full': redactedUrl(url),
    'server.address': url.hostname,
    'server.port': url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port),
    'messaging.system': 'mqtt',
    'messaging.destination.name': job.topic,
    'ce_broker.webhook.subscription': job.subscription.id
  }
  // counted already when its request is built: the second attempt is the first resend
  if (job.attempts > 1) attributes['http.request.resend_count'] = job.attempts - 1
  const { id, type, source } = job.event
  if (typeof id === 'string') attributes['cloudevents.event_id'] = id
  if (typeof type === 'string') attributes['cloudevents.event_type'] = type
  if (typeof source === 'string') attributes['cloudevents.event_source'] = source
  return attributes
}

/** The URL with each query value replaced, as the HTTP conventions ask of what may hold credentials (a webhook URL's token). */
function redactedUrl (url: URL): string {
  if (url.search === '') return url.href
  const redacted = new URL(url.href)
  for (const key of new Set(url.searchParams.keys())) redacted.searchParams.set(key, 'REDACTED')
  return redacted.href
}

function ended (span: Span, result: AttemptResult): void {
  if (result.status !== undefined) span.setAttribute('http.response.status_code', result.status)
  if (result.kind !== 'delivered') {
    // the status code for an answer, else the failure's kind
    span.setAttribute('error.type', result.status === undefined ? (result.kind === 'retry' ? 'no_answer' : 'not_sent') : String(result.status))
    span.setStatus({ code: SpanStatusCode.ERROR, message: result.error })
  }
  span.end()
}
