import { TraceFlags, type Context } from '@opentelemetry/api'
import { ExportResultCode, type ExportResult } from '@opentelemetry/core'
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http'
import { resourceFromAttributes } from '@opentelemetry/resources'
import {
  AlwaysOnSampler, BasicTracerProvider, BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler,
  type ReadableSpan, type Span, type SpanExporter, type SpanProcessor
} from '@opentelemetry/sdk-trace-base'
import { Counter, type Registry } from 'prom-client'
import type { TracingConfig } from '../config/index.js'
import { LogSampler } from '../log-sampler.js'
import type { TracingSource } from './types.js'

/** Export trouble (a collector down, spans dropped) is logged at most once per this interval, with the count since. */
const TROUBLE_LOG_MS = 60_000

/** What became of ended spans, for `ce_broker_trace_spans_total`. */
export interface SpanCounts {
  exported: number
  failed: number
  dropped: number
}

/** The broker's tracer provider and what it counted. */
export interface Exporting {
  readonly provider: BasicTracerProvider
  readonly counts: SpanCounts
  /** Count the spans in `registry`, read at scrape time. */
  readonly register: (registry: Registry) => void
}

/**
 * A tracer provider of the broker's own (never registered globally, so an application
 * that registers one keeps it): spans go through a `BatchSpanProcessor` to an
 * `OTLPTraceExporter` (OTLP/HTTP, JSON). Everything the config says is given to the SDK
 * explicitly; the SDK reads `OTEL_*` variables only for what the config does not set
 * (the exporter's headers and compression, say). Sampling: an event's own sampled flag
 * decides for its spans (parent-based); a trace the broker starts is recorded with
 * `tracing.sampleRatio`.
 */
export function createExporting (config: TracingConfig & { readonly otlpUrl: string }, source: TracingSource): Exporting {
  const counts: SpanCounts = { exported: 0, failed: 0, dropped: 0 }
  const trouble = new LogSampler(TROUBLE_LOG_MS)
  const exporter = new CountingExporter(new OTLPTraceExporter({ url: config.otlpUrl, timeoutMillis: config.exportTimeoutMs }), counts, (result, spans) => {
    const suppressed = trouble.take('export')
    if (suppressed !== undefined) source.log.warn({ err: result.error, url: withoutSecrets(config.otlpUrl), spans, suppressed }, 'spans could not be exported to tracing.otlpUrl: dropped')
  })
  const batch = new BatchSpanProcessor(exporter, {
    maxQueueSize: config.maxQueueSize,
    maxExportBatchSize: config.maxExportBatchSize,
    scheduledDelayMillis: config.exportDelayMs,
    exportTimeoutMillis: config.exportTimeoutMs
  })
  const gate = new QueueGate(batch, config.maxQueueSize, exporter, counts, () => {
    const suppressed = trouble.take('queue')
    if (suppressed !== undefined) source.log.warn({ maxQueueSize: config.maxQueueSize, suppressed }, 'spans dropped: tracing.maxQueueSize spans wait for export already')
  })
  const root = config.sampleRatio >= 1 ? new AlwaysOnSampler() : new TraceIdRatioBasedSampler(config.sampleRatio)
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': config.serviceName, 'service.version': source.version, 'service.instance.id': source.nodeId }),
    sampler: new ParentBasedSampler({ root }),
    spanProcessors: [gate],
    forceFlushTimeoutMillis: config.exportTimeoutMs
  })
  return {
    provider,
    counts,
    register (registry) {
      new Counter({
        name: 'ce_broker_trace_spans_total',
        help: 'Recorded spans by outcome: exported (the collector took them), failed (the export failed after its retries), dropped (tracing.maxQueueSize spans were waiting)',
        labelNames: ['outcome'] as const,
        registers: [registry],
        collect () {
          this.reset()
          for (const outcome of ['exported', 'failed', 'dropped'] as const) this.inc({ outcome }, counts[outcome])
        }
      })
    }
  }
}

/** The exporter, counting what it was given by result; knows how many spans it was handed. */
class CountingExporter implements SpanExporter {
  /** Spans handed to `export` so far. */
  handed = 0

  constructor (
    private readonly inner: SpanExporter,
    private readonly counts: SpanCounts,
    private readonly onFailure: (result: ExportResult, spans: number) => void
  ) {}

  export (spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.handed += spans.length
    this.inner.export(spans, (result) => {
      if (result.code === ExportResultCode.SUCCESS) {
        this.counts.exported += spans.length
      } else {
        this.counts.failed += spans.length
        this.onFailure(result, spans.length)
      }
      done(result)
    })
  }

  async shutdown (): Promise<void> {
    await this.inner.shutdown()
  }

  async forceFlush (): Promise<void> {
    await this.inner.forceFlush?.()
  }
}

/**
 * In front of the batch processor, which drops what finds its queue full without telling
 * anyone: counts the sampled spans waiting (given to it, not yet handed to the exporter)
 * and drops, counted and logged, those that would not fit.
 */
class QueueGate implements SpanProcessor {
  #given = 0

  constructor (
    private readonly batch: BatchSpanProcessor,
    private readonly maxQueueSize: number,
    private readonly exporter: CountingExporter,
    private readonly counts: SpanCounts,
    private readonly onDrop: () => void
  ) {}

  onStart (span: Span, parentContext: Context): void {
    this.batch.onStart(span, parentContext)
  }

  onEnd (span: ReadableSpan): void {
    // unsampled spans are not exported: the batch processor skips them itself
    if ((span.spanContext().traceFlags & TraceFlags.SAMPLED) === 0) return
    if (this.#given - this.exporter.handed >= this.maxQueueSize) {
      this.counts.dropped++
      this.onDrop()
      return
    }
    this.#given++
    this.batch.onEnd(span)
  }

  async forceFlush (): Promise<void> {
    await this.batch.forceFlush()
  }

  async shutdown (): Promise<void> {
    await this.batch.shutdown()
  }
}

/** The URL as logs may show it: no user, password or query (a collector's token may ride in either). */
function withoutSecrets (url: string): string {
  const parsed = new URL(url)
  return `${parsed.protocol}//${parsed.host}${parsed.pathname}`
}
