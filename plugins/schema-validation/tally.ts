import { Counter, type Registry } from 'prom-client'
import { EventRejectedError, type EventSummary } from '../../src/core/index.js'

/** The label of events whose type has no registered schema: types are the publishers' words, not a bounded set. */
const UNREGISTERED = '(unregistered)'

/**
 * Validation outcomes per type and version (`ce_broker_schema_validations_total`) and
 * shadow-mode failures per type (`ce_broker_schema_shadow_failures_total`). Counted in
 * a plain map on the event loop (a map increment per event) and handed to prom-client
 * when it is scraped. Only registered types are labels by name: a client inventing types
 * cannot grow the metrics.
 */
export class ValidationTally {
  /** Whether a type is registered (set once the registry exists). */
  known: (type: string) => boolean = () => false
  /** Counts since the last scrape by type, version and outcome: nested maps, so a verdict allocates no key. */
  readonly #pending = new Map<string, Map<number | string, Map<string, number>>>()
  readonly #pendingShadow = new Map<string, number>()
  readonly #shadowTotals = new Map<string, number>()

  constructor (registry: Registry) {
    const pending = this.#pending
    const pendingShadow = this.#pendingShadow
    new Counter({
      name: 'ce_broker_schema_validations_total',
      help: 'Events checked against a schema, by type, version and outcome (accepted, would_reject, or the refusal reason)',
      labelNames: ['type', 'version', 'outcome'] as const,
      registers: [registry],
      collect () {
        for (const [type, byVersion] of pending) {
          for (const [version, byOutcome] of byVersion) {
            for (const [outcome, count] of byOutcome) this.inc({ type, version: String(version), outcome }, count)
          }
        }
        pending.clear()
      }
    })
    new Counter({
      name: 'ce_broker_schema_shadow_failures_total',
      help: 'Events delivered although their type\'s schema, in shadow mode, refused them',
      labelNames: ['type'] as const,
      registers: [registry],
      collect () {
        for (const [type, count] of pendingShadow) this.inc({ type }, count)
        pendingShadow.clear()
      }
    })
  }

  /** One verdict: an accepted event (`reason` undefined) or a refused one. */
  note (event: EventSummary | undefined, reason: string | undefined): void {
    const rawType = event?.type
    const type = rawType !== undefined && this.known(rawType) ? rawType : UNREGISTERED
    const shadow = event?.shadow
    const outcome = reason ?? (shadow === undefined ? 'accepted' : 'would_reject')
    const version = event?.schemaVersion ?? ''
    let byVersion = this.#pending.get(type)
    if (byVersion === undefined) this.#pending.set(type, byVersion = new Map())
    let byOutcome = byVersion.get(version)
    if (byOutcome === undefined) byVersion.set(version, byOutcome = new Map())
    byOutcome.set(outcome, (byOutcome.get(outcome) ?? 0) + 1)
    if (shadow !== undefined) {
      this.#pendingShadow.set(type, (this.#pendingShadow.get(type) ?? 0) + 1)
      this.#shadowTotals.set(type, (this.#shadowTotals.get(type) ?? 0) + 1)
    }
  }

  /** What an inline check threw. */
  refused (err: unknown): void {
    if (err instanceof EventRejectedError) this.note(err.event, err.reason)
  }

  /** Shadow failures of `type` on this node since start. */
  shadowFailures (type: string): number {
    return this.#shadowTotals.get(type) ?? 0
  }
}
