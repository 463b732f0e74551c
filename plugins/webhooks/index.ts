import { hostname } from 'node:os'
import { Counter, Gauge, Histogram } from 'prom-client'
import { DeliveryFailedError, LogSampler, MAX_JSON_DEPTH, PluginError, definePlugin, isReserved, messageOf, parseJson, type Settings, mayNestDeeperThan, nestedDeeperThan, service, type PluginContext, type PublishedMessage, type TraceCarrier } from '../../src/core/index.js'
import { DEAD_LETTERS, type DeadLetterEntry } from '../dead-letter/index.js'
import type { BreakerState, DeliveryOptions, DeliveryQueueLike, Job } from './delivery.js'
import { FilterOutcomes } from './filter-outcomes.js'
import { handshake, type HandshakeResult } from './handshake.js'
import { IntakeGate } from './intake.js'
import { DeliveryQueue } from './memory-queue.js'
import { DeliveryRates } from './rate.js'
import { RedisDeliveryQueue } from './redis-queue.js'
import { DeliveryTallies, WebhookRegistry } from './registry.js'
import { buildRequest, webhookId } from './request.js'
import { webhookRoutes } from './routes.js'
import { SharedSubscriptions } from './shared.js'
import { SubscriptionStore, type RetryPolicy, type Subscription, type SubscriptionInput } from './subscriptions.js'
import { UrlPolicy, type Resolver } from './url-policy.js'
import { webhooksSection } from './config.js'
import { deliveryTracing } from './tracing.js'

export { DeniedAddressError, UrlPolicy, type Resolver, type UrlPolicyOptions } from './url-policy.js'
export { backoffMs, retryAfterMs, isRetryable, type BreakerState } from './delivery.js'
export { toMqttFilter, type RetryPolicy, type Subscription, type SubscriptionInput, type SubscriptionView } from './subscriptions.js'
export { compileFilters, compileCesql, InvalidFilterError, CesqlSyntaxError, type EventFilter, type FilterLimits } from './filters/index.js'
export { WebhookRegistry, type WebhookListing } from './registry.js'

/** The webhooks plugin's service: its subscriptions, for the catalog. */
export const WEBHOOKS = service<WebhookRegistry>('webhooks')

/** Options of the webhooks plugin: the `webhooks` section of the config, and how host names resolve (default: the system resolver). */
export type WebhooksOptions = Settings<typeof webhooksSection.schema> & { readonly resolve?: Resolver }

/**
 * The HTTP bridge (PRODUCT §4): every accepted CloudEvent whose topic matches a
 * subscription's topic filters, and which passes its attribute filters (Knative's
 * `filters`, CESQL included, compiled once per subscription), is POSTed to its URL in the CloudEvents HTTP binding,
 * signed when the subscription has a secret. Deliveries are queued from the
 * `published` hook on the node where the event entered, so a publisher never waits
 * for a webhook (with Redis, its ack waits until the delivery jobs are written, one
 * round trip per turn, never for the delivery); 408, 429, 5xx and network errors are retried with backoff, other
 * 4xx fail at once, 410 disables the subscription, a connection to an address in
 * `webhooks.denyNetworks` is refused and fails at once, so does a request that cannot
 * be made (an event binary mode cannot carry, a header undici refuses), and a delivery
 * that fails for good, or finds the queue full, is dead-lettered. Each subscription
 * has its own connections: one endpoint's trouble never holds another's deliveries.
 */
export const webhooks = definePlugin<WebhooksOptions>({ name: 'webhooks', sections: [webhooksSection], dependsOn: ['dead-letter'], setup: setupWebhooks })

/** Where each subscription's adaptive concurrency starts: the fixed concurrency of earlier versions. */
const INITIAL_CONCURRENCY = 8

async function setupWebhooks (ctx: PluginContext, opts: WebhooksOptions): Promise<() => Promise<void>> {
  const deadLetters = ctx.need(DEAD_LETTERS)
  const store = new SubscriptionStore(opts.filters)
  const filterOutcomes = new FilterOutcomes(ctx)
  const policy = new UrlPolicy(opts.denyNetworks, opts.resolve === undefined ? {} : { resolve: opts.resolve })
  const tallies = new DeliveryTallies()
  const shared = ctx.redis === undefined ? undefined : await SharedSubscriptions.start(ctx.redis, store, (err) => { ctx.reportError(err, { op: 'shared webhook subscriptions' }) })
  const metrics = webhookMetrics(ctx)

  const deadLetter = deadLetterFor(ctx)
  const delivery = deliveryOptions(ctx, opts, {
    policy,
    store,
    metrics,
    tallies,
    deadLetter,
    forget: (id) => deadLetters.store.delete(id),
    disable: async (subscription, reason) => { await registry.disable(subscription, reason) }
  })
  const queue: DeliveryQueueLike = ctx.redis === undefined ? new DeliveryQueue(delivery) : sharedQueue(ctx, opts, ctx.redis, { delivery, store, metrics, deadLetter })
  const intake = holdIntake(ctx, opts.intake, store, queue)
  const registry = new WebhookRegistry({ store, policy, tallies, queue, shared, handshake: validationHandshake(ctx, opts, policy), onRefused: (err) => { filterOutcomes.refused(err) } })
  await registerConfigured(ctx, registry, opts.subscriptions)
  watchQueue(ctx, store, queue)

  /** Queue one delivery; a full queue dead-letters it. */
  function deliver (subscription: Subscription, topic: string, raw: Buffer, event: CloudEventObject, replayOf?: string, trace?: TraceCarrier): void {
    const job = newJob(subscription, topic, raw, event, replayOf, trace)
    if (!queue.enqueue(job)) {
      metrics.deliveries.inc({ subscription: subscription.id, outcome: 'queue_full' })
      deadLetter(job, 'queue_full', `the delivery queue holds ${opts.maxQueued} deliveries`)
    }
  }

  ctx.hooks.published(function enqueueDeliveries (message: PublishedMessage): Promise<void> | undefined {
    if (store.size === 0 || isReserved(message.topic)) return undefined
    const matching = store.matching(message.topic)
    if (matching.length === 0) return undefined
    // what the intake gate counted as on its way is here: queued below, or never (not a CloudEvent, filtered out)
    intake.queued(matching.map((m) => m.subscription.id))
    const event = cloudEventOf(message.payload)
    if (event === undefined) {
      // accepted on a topic no rule checks, so not dead-lettered here: its subscribers got it as published
      ctx.log.debug({ topic: message.topic }, 'not a CloudEvent (or nested deeper than MAX_JSON_DEPTH): no webhook delivery')
      return undefined
    }
    const passing = filterOutcomes.passing(matching, event)
    for (const subscription of passing) deliver(subscription, message.topic, message.payload, event, undefined, message.trace)
    // with Redis: the publisher's ack waits until the jobs are there
    return passing.length === 0 ? undefined : queue.written()
  })

  function redeliver (entry: DeadLetterEntry): string | undefined {
    const id = entry.record.data.subscription ?? ''
    const subscription = store.get(id)
    if (subscription === undefined) return `webhook subscription ${id} no longer exists`
    if (subscription.disabled !== undefined) return `webhook subscription ${id} is disabled: ${subscription.disabled.reason}`
    const event = cloudEventOf(entry.original.payload)
    if (event === undefined) return 'the dead letter does not hold a CloudEvent'
    deliver(subscription, entry.original.topic, entry.original.payload, event, entry.id)
    return undefined
  }
  // a delivery that failed, expired or found the queue full goes again to its subscription only
  for (const reason of ['delivery_failed', 'expired', 'queue_full']) deadLetters.redeliverer(reason, redeliver)
  ctx.provide(WEBHOOKS, registry)
  ctx.routes(async function routes (app) { await app.register(webhookRoutes, { webhooks: registry }) })
  ctx.stats('webhooks', () => registry.list())

  ctx.log.info({ subscriptions: store.size }, 'webhooks ready')
  return async function stopWebhooks () {
    intake.close()
    await queue.close()
    if (ctx.redis !== undefined) store.watch(undefined)
    shared?.close()
  }
}

type WebhookMetrics = ReturnType<typeof webhookMetrics>
type DeadLetterJob = (job: Job, reason: 'delivery_failed' | 'expired' | 'queue_full', detail: string) => void

/** Dead-letter a delivery that failed for good, expired or found the queue full, with the original event. */
function deadLetterFor (ctx: PluginContext): DeadLetterJob {
  return function deadLetter (job, reason, detail) {
    const error = new DeliveryFailedError(reason, job.subscription.id, job.eventId, job.attempts, job.lastStatus, detail)
    ctx.deadLetter({ topic: job.topic, payload: job.raw, qos: 1 }, error, { origin: 'internal', clientId: null, ...(job.replayOf === undefined ? {} : { replayOf: job.replayOf }) })
  }
}

interface DeliveryParts {
  readonly policy: UrlPolicy
  readonly store: SubscriptionStore
  readonly metrics: WebhookMetrics
  readonly tallies: DeliveryTallies
  readonly deadLetter: DeadLetterJob
  /** Remove the dead letter a delivered redelivery came from. */
  readonly forget: (deadLetterId: string) => Promise<unknown>
  /** Disable a subscription whose endpoint answered 410. */
  readonly disable: (subscription: string, reason: string) => Promise<void>
}

/** How the queue delivers (`webhooks.defaults`), and what it tells of each delivery's end: counted, dead-lettered, a 410 disabling its subscription. */
function deliveryOptions (ctx: PluginContext, opts: WebhooksOptions, parts: DeliveryParts): DeliveryOptions {
  const { policy, store, metrics, tallies, deadLetter } = parts
  return {
    retry: opts.defaults.retry,
    timeoutMs: opts.defaults.timeoutMs,
    ttlMs: opts.defaults.ttlMs,
    concurrency: opts.defaults.concurrency,
    initialConcurrency: Math.min(INITIAL_CONCURRENCY, opts.defaults.concurrency),
    latencyTargetMs: opts.defaults.latencyTargetMs,
    maxQueued: opts.maxQueued,
    breakerFailures: opts.breaker.failures,
    breakerHalfOpenAfterMs: opts.breaker.halfOpenAfterMs,
    // the address is checked again when connecting: a name may answer otherwise than at registration
    connect: policy.connector(),
    current: (id) => store.get(id),
    rates: new DeliveryRates((subscription) => { metrics.rateHeld.inc({ subscription }) }),
    build: (job, now, trace) => buildRequest(job.event, job.raw, job.subscription, job.id, now, trace),
    ...(ctx.tracing === undefined ? {} : { tracing: deliveryTracing(ctx.tracing) }),
    onDelivered: (job, ms) => {
      if (job.replayOf !== undefined) {
        parts.forget(job.replayOf).catch((err: unknown) => { ctx.reportError(err, { op: 'remove redelivered dead letter', id: job.replayOf }) })
      }
      metrics.deliveries.inc({ subscription: job.subscription.id, outcome: 'delivered' })
      tallies.count(job.subscription.id, 'delivered', job.lastStatus)
      metrics.latency.observe({ subscription: job.subscription.id }, ms / 1000)
    },
    onFailed: (job, end) => {
      metrics.deliveries.inc({ subscription: job.subscription.id, outcome: end === 'expired' ? 'expired' : 'failed' })
      tallies.count(job.subscription.id, 'failed', job.lastStatus)
      if (end === 'expired') {
        deadLetter(job, 'expired', `still failing ${opts.defaults.ttlMs} ms after the event was accepted (webhooks.defaults.ttlMs), after ${job.attempts} attempt${job.attempts === 1 ? '' : 's'}: ${job.lastError ?? 'no answer'}`)
        return
      }
      if (end === 'gone') {
        parts.disable(job.subscription.id, `${job.subscription.webhook_url} answered 410 Gone`)
          .catch((err: unknown) => { ctx.reportError(err, { op: 'disable subscription', subscription: job.subscription.id }) })
        ctx.log.warn({ subscription: job.subscription.id, url: job.subscription.webhook_url }, 'webhook answered 410 Gone: subscription disabled')
      }
      deadLetter(job, 'delivery_failed', job.lastError ?? 'no answer')
    },
    onError: (err, context) => { ctx.reportError(err, context) }
  }
}

interface QueueParts {
  readonly delivery: DeliveryOptions
  readonly store: SubscriptionStore
  readonly metrics: WebhookMetrics
  readonly deadLetter: DeadLetterJob
}

/** The durable queue of a cluster, with a worker per subscription that follows the shared set. */
function sharedQueue (ctx: PluginContext, opts: WebhooksOptions, connection: NonNullable<PluginContext['redis']>, { delivery, store, metrics, deadLetter }: QueueParts): RedisDeliveryQueue {
  // BullMQ blocks on its connections and wants them never to give up on a command
  const redis = connection.duplicate({ maxRetriesPerRequest: null })
  redis.on('error', (err: Error) => { ctx.reportError(err, { op: 'delivery queue connection' }) })
  const durable = new RedisDeliveryQueue({
    ...delivery,
    redis,
    lockMs: opts.lockMs,
    event: cloudEventOf,
    onRefused: (job, why) => {
      metrics.deliveries.inc({ subscription: job.subscription.id, outcome: 'queue_full' })
      deadLetter(job, 'queue_full', why)
    },
    onOrphaned: (subscription, eventId) => { ctx.log.info({ subscription, eventId }, 'webhook subscription removed: its queued delivery is dropped') }
  })
  durable.follow(store.list())
  store.watch(() => { durable.follow(store.list()) })
  return durable
}

/** The intake gate of `webhooks.intake`, in the authorizePublish chain, counted and logged (sampled per client). */
function holdIntake (ctx: PluginContext, opts: WebhooksOptions['intake'], store: SubscriptionStore, queue: DeliveryQueueLike): IntakeGate {
  const counter = new Counter({ name: 'ce_broker_webhook_intake_total', help: 'Publishes bound for a webhook subscription that was behind (webhooks.intake.highWater): held, let through when the hold ran out (timeout), or refused over HTTP (refused)', labelNames: ['subscription', 'outcome'] as const, registers: [ctx.metrics] })
  const sampler = new LogSampler(ctx.config.limits.clientLogIntervalMs)
  const gate = new IntakeGate({
    ...opts,
    depthOf: (id) => queue.depthOf(id),
    matching: (topic) => store.size === 0 ? [] : store.matching(topic).map((m) => m.subscription.id),
    onIntake: (subscription, outcome, clientId) => {
      counter.inc({ subscription, outcome })
      const suppressed = sampler.take(clientId ?? 'http')
      if (suppressed !== undefined) ctx.log.info({ subscription, outcome, clientId, depth: queue.depthOf(subscription), suppressed }, outcome === 'held' ? 'publish held: a webhook subscription it is bound for is behind' : outcome === 'timeout' ? 'held publish let through: its hold ran out' : 'HTTP publish refused (429): a webhook subscription it is bound for is behind')
    }
  })
  // with no subscription there is nothing to hold for: publishes keep the fast path
  ctx.hooks.authorizePublish(function holdWhileBehind (attempt) { return gate.admit(attempt) }, { idle: () => store.size === 0 })
  return gate
}

/**
 * The validation handshake as registration runs it: from `webhooks.origin` (the host
 * name when empty), within the subscription's timeout, through the URL policy, counted
 * by result (`ok`, `refused`).
 */
function validationHandshake (ctx: PluginContext, opts: WebhooksOptions, policy: UrlPolicy): (input: SubscriptionInput) => Promise<HandshakeResult> {
  const origin = opts.origin === '' ? hostname() : opts.origin
  const connect = policy.connector()
  const counted = new Counter({ name: 'ce_broker_webhook_handshakes_total', help: 'Webhook validation handshakes by result (ok, refused)', labelNames: ['result'] as const, registers: [ctx.metrics] })
  return async function validate (input) {
    const result = await handshake({ url: input.webhook_url, origin, timeoutMs: input.timeoutMs ?? opts.defaults.timeoutMs, connect })
    counted.inc({ result: result.ok ? 'ok' : 'refused' })
    return result
  }
}

/** The delivery counters, by subscription and outcome, the latency of successful attempts, and the holds of allowed rates. */
function webhookMetrics (ctx: PluginContext): { readonly deliveries: Counter<'subscription' | 'outcome'>, readonly latency: Histogram<'subscription'>, readonly rateHeld: Counter<'subscription'> } {
  return {
    rateHeld: new Counter({ name: 'ce_broker_webhook_rate_held_total', help: 'Times a webhook delivery waited for its endpoint\'s WebHook-Allowed-Rate', labelNames: ['subscription'] as const, registers: [ctx.metrics] }),
    deliveries: new Counter({ name: 'ce_broker_webhook_deliveries_total', help: 'Webhook deliveries by subscription and outcome (delivered, failed, queue_full)', labelNames: ['subscription', 'outcome'] as const, registers: [ctx.metrics] }),
    latency: new Histogram({ name: 'ce_broker_webhook_delivery_seconds', help: 'Time of the successful attempt of a webhook delivery', labelNames: ['subscription'] as const, buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [ctx.metrics] })
  }
}

const STATE_VALUE: Readonly<Record<BreakerState, number>> = { closed: 0, 'half-open': 1, open: 2 }

/** Gauges of each subscription's circuit and of the queue's depth, read at scrape time. */
function watchQueue (ctx: PluginContext, store: SubscriptionStore, queue: DeliveryQueueLike): void {
  new Gauge({
    name: 'ce_broker_webhook_breaker_state',
    help: 'Circuit of each webhook subscription: 0 closed, 1 half-open, 2 open',
    labelNames: ['subscription'] as const,
    registers: [ctx.metrics],
    collect () {
      this.reset()
      for (const subscription of store.list()) this.set({ subscription: subscription.id }, STATE_VALUE[queue.breakerState(subscription.id)])
    }
  })
  new Gauge({
    name: 'ce_broker_webhook_concurrency',
    help: 'Requests each webhook subscription may have in flight now: its adaptive limit on this node',
    labelNames: ['subscription'] as const,
    registers: [ctx.metrics],
    collect () {
      this.reset()
      for (const subscription of store.list()) this.set({ subscription: subscription.id }, queue.concurrencyOf(subscription.id))
    }
  })
  new Gauge({ name: 'ce_broker_webhook_queue_depth', help: 'Webhook deliveries queued or waiting for a retry', registers: [ctx.metrics], collect () { this.set(queue.depth()) } })
}

type CloudEventObject = Record<string, unknown> & { id: string, source: string }

/** The subscriptions of the config file, registered at start-up: one that fails its handshake is held, one that is invalid stops the start. */
async function registerConfigured (ctx: PluginContext, registry: WebhookRegistry, subscriptions: readonly SubscriptionInput[]): Promise<void> {
  for (const [i, input] of subscriptions.entries()) {
    const { subscription } = await registry.register(input, true).catch((err: unknown) => { throw new PluginError('webhooks', `webhooks.subscriptions[${i}]: ${messageOf(err)}`, { cause: err }) })
    // held, not dropped: registering it again (API or restart) runs the handshake again
    if (subscription.disabled !== undefined) ctx.log.warn({ subscription: subscription.id, url: subscription.webhook_url, reason: subscription.disabled.reason }, 'webhook subscription held: its handshake failed')
  }
}

/** A delivery of `event` to `subscription`, not tried yet; `replayOf` when it redelivers that dead letter, `trace` the span that received the event. */
function newJob (subscription: Subscription, topic: string, raw: Buffer, event: CloudEventObject, replayOf?: string, trace?: TraceCarrier): Job {
  const orderingKey = orderingKeyOf(subscription, event)
  const job: Job = {
    subscription,
    id: webhookId(subscription.id, event.source, event.id),
    eventId: event.id,
    topic,
    raw,
    event,
    acceptedAt: Date.now(),
    attempts: 0,
    lastStatus: undefined,
    lastError: undefined,
    ...(replayOf === undefined ? {} : { replayOf }),
    ...(orderingKey === undefined ? {} : { orderingKey })
  }
  // tracing off: not even an empty object more per delivery
  return trace === undefined ? job : { ...job, trace }
}

/** The key an ordered subscription orders `event` by: its `partitionkey` or `subject` attribute (a string or a number), or none. */
function orderingKeyOf (subscription: Subscription, event: CloudEventObject): string | undefined {
  const ordering = subscription.ordering ?? 'none'
  if (ordering === 'none') return undefined
  const value = event[ordering]
  return typeof value === 'string' || typeof value === 'number' ? String(value) : undefined
}

/**
 * The payload as a CloudEvent object (structured JSON with the required attributes), or
 * `undefined`. JSON nested deeper than `MAX_JSON_DEPTH` is not an event, as on every
 * ingress: a topic no validation rule checks lets it through, and building its request
 * (JSON.stringify of `data` in binary mode) would overflow the stack.
 */
function cloudEventOf (payload: Buffer): CloudEventObject | undefined {
  // parsed once per payload: validation on the event loop has parsed it already
  const parsed = parseJson(payload)
  // not JSON: not a CloudEvent, which the caller says
  if (!parsed.ok) return undefined
  const value = parsed.value
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined
  if (mayNestDeeperThan(payload.length, MAX_JSON_DEPTH) && nestedDeeperThan(value, MAX_JSON_DEPTH)) return undefined
  const event = value as Record<string, unknown>
  const { id, source, type, specversion } = event
  if (typeof id !== 'string' || typeof source !== 'string' || typeof type !== 'string' || specversion !== '1.0') return undefined
  return { ...event, id, source }
}

