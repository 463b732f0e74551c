import type { Registry } from 'prom-client'
import type { PluginTracing, PublishAttempt, PublishVerdict, TraceCarrier } from '../context.js'
import type { Logger } from '../logger.js'

/** Who the spans are from (the resource's `service.version` and `service.instance.id`), and where trouble is logged. */
export interface TracingSource {
  readonly nodeId: string
  readonly version: string
  readonly log: Logger
}

/**
 * The broker's tracing, when `tracing.otlpUrl` is set: the publish pipeline tells it
 * where each publish is, and it makes the spans. When tracing is off there is no such
 * object, and the pipeline's only work is to see that.
 */
export interface Tracing {
  /** What plugins get (`ctx.tracing`). */
  readonly plugin: PluginTracing
  /** A publish enters the pipeline: its `receive` span starts now (made once it is decided, when its parent is known). */
  readonly begin: (packet: object, attempt: PublishAttempt) => void
  /**
   * A publish is decided: its `receive` span and its steps' spans are made (the parent
   * is the event's `traceparent` when valid) and ended, with an error status when it
   * was refused; an accepted one's `route` span starts.
   */
  readonly decided: (attempt: PublishAttempt, verdict: PublishVerdict) => void
  /** An accepted packet has been routed (aedes' `published`): its `route` span ends. The `receive` span, for work done later. */
  readonly routed: (packet: object) => TraceCarrier | undefined
  /** Count the spans in `registry` (`ce_broker_trace_spans_total`). */
  readonly register: (registry: Registry) => void
  /** Export what is left and stop; bounded by `tracing.exportTimeoutMs`. */
  readonly shutdown: () => Promise<void>
}
