import { Counter } from 'prom-client'
import { LogSampler, type Logger, type PluginContext } from '../../src/core/index.js'
import type { EvaluationError, EventAttributes, InvalidFilterError } from './filters/index.js'
import type { MatchingSubscription, Subscription } from './subscriptions.js'

/**
 * What the subscriptions' attribute filters did, in metrics and sampled log lines:
 * events each subscription's filters left out, the evaluation errors of its `cesql`
 * expressions (the event is left out, never an error for the broker), and the
 * registrations refused for their filters.
 */
export class FilterOutcomes {
  readonly #filtered: Counter<'subscription'>
  readonly #errors: Counter<'subscription' | 'kind'>
  readonly #refused: Counter<'reason'>
  readonly #log: Logger
  /** At most one line per subscription (or refusal reason) per `limits.clientLogIntervalMs`: a publisher's events can trigger these. */
  readonly #sampler: LogSampler

  constructor (ctx: PluginContext) {
    this.#log = ctx.log
    this.#sampler = new LogSampler(ctx.config.limits.clientLogIntervalMs)
    this.#filtered = new Counter({
      name: 'ce_broker_webhook_filtered_total',
      help: 'Events whose topic a webhook subscription matched but its attribute filters left out (evaluation errors included)',
      labelNames: ['subscription'] as const,
      registers: [ctx.metrics]
    })
    this.#errors = new Counter({
      name: 'ce_broker_webhook_filter_errors_total',
      help: 'Errors evaluating a webhook subscription\'s cesql filters, by CESQL error kind; the event is left out',
      labelNames: ['subscription', 'kind'] as const,
      registers: [ctx.metrics]
    })
    this.#refused = new Counter({
      name: 'ce_broker_webhook_filters_refused_total',
      help: 'Webhook subscriptions refused for their attribute filters: invalid, or over a webhooks.filters bound (too_long, too_deep, too_many)',
      labelNames: ['reason'] as const,
      registers: [ctx.metrics]
    })
  }

  /** The subscriptions whose attribute filters `event` passes; each that leaves it out counts it. */
  passing (matching: readonly MatchingSubscription[], event: EventAttributes): Subscription[] {
    const out: Subscription[] = []
    for (const { subscription, accepts } of matching) {
      let passed: boolean
      try {
        passed = accepts(event, (error) => { this.#failed(subscription.id, event.id, error) })
      } catch (err: unknown) {
        // a filter must not throw; if one does, its subscription is left out, the others still get the event
        this.#failed(subscription.id, event.id, { kind: 'generic', message: `the filter threw: ${err instanceof Error ? err.message : String(err)}`, position: { line: 1, column: 1 } })
        passed = false
      }
      if (passed) out.push(subscription)
      else this.#filtered.inc({ subscription: subscription.id })
    }
    return out
  }

  /** A registration refused for its filters. */
  refused (err: InvalidFilterError): void {
    this.#refused.inc({ reason: err.refusal })
    const suppressed = this.#sampler.take(`refused:${err.refusal}`)
    if (suppressed !== undefined) this.#log.info({ reason: err.refusal, path: err.path, suppressed }, `webhook subscription refused: ${err.message}`)
  }

  #failed (subscription: string, eventId: unknown, error: EvaluationError): void {
    this.#errors.inc({ subscription, kind: error.kind })
    // an event without the attribute an expression reads is ordinary: no warning for it
    if (error.kind === 'missingAttribute') {
      this.#log.debug({ subscription, eventId, kind: error.kind, detail: error.message }, 'webhook filter expression failed: the event is left out')
      return
    }
    const suppressed = this.#sampler.take(`failed:${subscription}`)
    if (suppressed !== undefined) this.#log.warn({ subscription, eventId, kind: error.kind, detail: error.message, suppressed }, 'webhook filter expression failed: the event is left out')
  }
}
