import { Type } from '@sinclair/typebox'
import { ConfigError } from '../errors.js'
import { configSection, setting, type Settings } from './section.js'

const tracingSchema = Type.Object({
  // absent: tracing is off, and nothing of OpenTelemetry's SDK is even loaded
  otlpUrl: Type.Optional(Type.String({
    pattern: '^https?://\\S+$',
    ...setting({
      env: 'CE_BROKER_TRACING_OTLP_URL',
      shownDefault: 'none (off)',
      doc: 'the OTLP/HTTP traces endpoint spans are exported to (`http://collector:4318/v1/traces`, JSON); set, the broker makes OpenTelemetry spans of each event (see [Tracing](#tracing))'
    })
  })),
  serviceName: Type.String({
    minLength: 1,
    default: 'ce-broker',
    ...setting({ env: 'CE_BROKER_TRACING_SERVICE_NAME', doc: 'the `service.name` of the spans (their resource also names `service.version` and `service.instance.id`, the node id)' })
  }),
  sampleRatio: Type.Number({
    minimum: 0,
    maximum: 1,
    default: 1,
    ...setting({ env: 'CE_BROKER_TRACING_SAMPLE_RATIO', doc: 'share of the traces the broker starts (events without a valid `traceparent`) that are recorded; an event with one follows its sampled flag' })
  }),
  maxQueueSize: Type.Integer({
    minimum: 1,
    default: 2048,
    ...setting({ env: 'CE_BROKER_TRACING_MAX_QUEUE_SIZE', doc: 'ended spans waiting to be exported; beyond it new ones are dropped and counted (`ce_broker_trace_spans_total{outcome="dropped"}`)' })
  }),
  maxExportBatchSize: Type.Integer({
    minimum: 1,
    default: 512,
    ...setting({ env: 'CE_BROKER_TRACING_MAX_EXPORT_BATCH_SIZE', doc: 'spans in one export request at most; no more than `tracing.maxQueueSize`' })
  }),
  exportDelayMs: Type.Integer({
    minimum: 1,
    default: 5000,
    ...setting({ env: 'CE_BROKER_TRACING_EXPORT_DELAY_MS', doc: 'longest an ended span waits before its batch is exported (a full batch goes at once)' })
  }),
  exportTimeoutMs: Type.Integer({
    minimum: 1,
    default: 10_000,
    ...setting({ env: 'CE_BROKER_TRACING_EXPORT_TIMEOUT_MS', doc: 'how long one export request (with the exporter\'s retries) may take before its spans are given up and counted `failed`' })
  })
}, { additionalProperties: false })

/** OpenTelemetry tracing: off unless `otlpUrl` is set. */
export type TracingConfig = Settings<typeof tracingSchema>

/** Spans over OTLP/HTTP (see `src/core/tracing/`). */
export const tracingSection = configSection({ key: 'tracing', schema: tracingSchema, check: checkTracing })

function checkTracing (tracing: TracingConfig): void {
  if (tracing.maxExportBatchSize > tracing.maxQueueSize) {
    throw new ConfigError('config', 'tracing.maxExportBatchSize', `must be at most tracing.maxQueueSize (${tracing.maxQueueSize}), got ${tracing.maxExportBatchSize}`)
  }
}
