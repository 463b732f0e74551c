/**
 * OpenTelemetry tracing of events (README "Tracing"). Off unless `tracing.otlpUrl` is
 * set; then the SDK, the exporter and the spans' code are loaded (a dynamic import, so a
 * broker without tracing never loads them) and the pipeline is given a `Tracing`.
 */
import type { TracingConfig } from '../config/index.js'
import type { Tracing, TracingSource } from './types.js'

export type { Tracing, TracingSource } from './types.js'
export {
  formatTraceparent, parseTraceparent, propagatedTraceContext, traceContextProblem, traceparentProblem, tracestateProblem,
  MAX_TRACESTATE_MEMBERS, type Traceparent
} from './trace-context.js'

/** The broker's tracing, or `undefined` when `tracing.otlpUrl` is not set. */
export async function startTracing (config: TracingConfig, source: TracingSource): Promise<Tracing | undefined> {
  const url = config.otlpUrl
  if (url === undefined) return undefined
  const { createTracing } = await import('./tracer.js')
  return createTracing({ ...config, otlpUrl: url }, source)
}
