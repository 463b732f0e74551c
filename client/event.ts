import { randomUUID } from 'node:crypto'
import { context, isSpanContextValid, trace } from '@opentelemetry/api'

/**
 * Each CloudEvent type's `data`, as `ce-broker types` generates it (`export interface
 * Events { 'albergue.v1.booking.reserved': AlbergueV1BookingReserved, ... }`), handed to
 * `createPublisher<Events>()` and `createWebhookHandler<Events>()`. Without one, any type
 * and any data are accepted.
 */
export type EventMap = object

/** What `publish` and `on` accept as types and data: the map's, or any string and any data. */
export type TypeOf<M extends EventMap> = [keyof M] extends [never] ? string : Extract<keyof M, string>
export type DataOf<M extends EventMap, T extends string> = T extends keyof M ? M[T] : unknown

/** An extension attribute's value: CloudEvents' scalar kinds. */
export type ExtensionValue = string | number | boolean

/** Attributes of one event beside its type and data. */
export interface EventOptions {
  /** Default: a new UUID. Publishing again with the same `id` (and source) is answered as a duplicate. */
  readonly id?: string
  /** Default: the publisher's. */
  readonly source?: string
  readonly subject?: string
  /** Default: now. */
  readonly time?: Date | string
  /** Default: the type's entry in the publisher's `dataschemas`. */
  readonly dataschema?: string
  /** Extension attributes (`partitionkey`, `correlationid`, ...): lower-case letters and digits, at most 20. */
  readonly extensions?: Readonly<Record<string, ExtensionValue>>
}

/** A CloudEvent in the structured JSON form the broker takes over MQTT. */
export interface CloudEventJson {
  readonly specversion: '1.0'
  readonly id: string
  readonly source: string
  readonly type: string
  readonly [attribute: string]: unknown
}

/** The MQTT topic of a type (PRODUCT §2): `albergue.v1.booking.reserved` → `albergue/v1/booking/reserved`. */
export function topicOf (type: string): string {
  return type.replaceAll('.', '/')
}

/**
 * Why a type makes no topic to publish on, or undefined. An MQTT wildcard (`+`, `#`)
 * in a publish's topic is a protocol error for which the broker disconnects the
 * publisher, and every other publish under way on that connection goes unanswered; an
 * empty topic is never answered.
 */
export function typeProblem (type: string): string | undefined {
  if (type === '') return 'is empty'
  if (/[+#]/.test(type)) return 'holds an MQTT wildcard ("+" or "#"), which no topic published on may hold'
  return undefined
}

/** Build the event: id, time, source, dataschema and the active OpenTelemetry span's trace context filled in. */
export function buildEvent (type: string, data: unknown, source: string, dataschemas: Readonly<Record<string, string>>, options: EventOptions = {}): CloudEventJson {
  const time = options.time ?? new Date()
  const dataschema = options.dataschema ?? (Object.hasOwn(dataschemas, type) ? dataschemas[type] : undefined)
  return {
    specversion: '1.0',
    id: options.id ?? randomUUID(),
    source: options.source ?? source,
    type,
    time: typeof time === 'string' ? time : time.toISOString(),
    datacontenttype: 'application/json',
    ...(dataschema === undefined ? {} : { dataschema }),
    ...(options.subject === undefined ? {} : { subject: options.subject }),
    ...traceContext(),
    ...options.extensions,
    data
  }
}

/**
 * The CloudEvents distributed-tracing extension from the active span (W3C Trace Context):
 * the only place trace context can travel on MQTT 3.1.1. Read from the span itself, so it
 * works whether or not the application registered a propagator.
 */
export function traceContext (): { traceparent?: string, tracestate?: string } {
  const span = trace.getSpanContext(context.active())
  if (span === undefined || !isSpanContextValid(span)) return {}
  const traceparent = `00-${span.traceId}-${span.spanId}-${(span.traceFlags & 0xff).toString(16).padStart(2, '0')}`
  const tracestate = span.traceState?.serialize()
  return tracestate === undefined || tracestate === '' ? { traceparent } : { traceparent, tracestate }
}
