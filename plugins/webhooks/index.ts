import { Counter, Gauge, Histogram } from 'prom-client'
import { BadRequestError, DeliveryFailedError, MAX_JSON_DEPTH, definePlugin, isReserved, mayNestDeeperThan, nestedDeeperThan, type DeadLetterStore, type PublishedMessage } from '../../src/index.js'
import type { BreakerState, DeliveryOptions, DeliveryQueueLike, Job } from './delivery.js'
import { DeliveryQueue } from './memory-queue.js'
import { RedisDeliveryQueue } from './redis-queue.js'
import { buildRequest, webhookId } from './request.js'
import { SubscriptionStore, toMqttFilter, viewOf, type RetryPolicy, type Subscription, type SubscriptionInput, type SubscriptionView } from './subscriptions.js'
import { UrlPolicy, type UrlPolicyOptions } from './url-policy.js'
import { SharedSubscriptions } from './shared.js'
import type { Redis } from 'ioredis'

export { DeniedAddressError, UrlPolicy, type Resolver, type UrlPolicyOptions } from './url-policy.js'
export { backoffMs, retryAfterMs, isRetryable, type BreakerState } from './delivery.js'
export { toMqttFilter, type RetryPolicy, type Subscription, type SubscriptionInput, type SubscriptionView } from './subscriptions.js'

/**
 * The webhook subscriptions of a broker, as the HTTP API and the plugin share them:
 * registration checks the body, the filters and the URL.
 */
export class WebhookRegistry {
  readonly store = new SubscriptionStore()
  /** Where webhook URLs may point: checked at registration, and by every connection a delivery opens. */
  readonly policy: UrlPolicy
  #shared: SharedSubscriptions | undefined
  /** The circuit of a subscription, once the plugin's queue tells it. */
  breakerState: (id: string) => BreakerState = () => 'closed'
  /** Queue a dead letter's delivery to one subscription again (set by the plugin): why not, or `undefined`. */
  redeliver: (subscriptionId: string, message: { readonly topic: string, readonly payload: Buffer | string }, deadLetterId: string) => string | undefined =
    () => 'webhooks are not running'
  /** Drop the deliveries still waiting for a removed subscription (set by the plugin with a durable queue). */
  forget: (subscriptionId: string) => Promise<void> = async () => {}

  /**
   * @param denyNetworks CIDR networks no webhook URL may point into (`webhooks.denyNetworks`)
   * @param options how host names are resolved (default: the system resolver)
   */
  constructor (denyNetworks: readonly string[], options: UrlPolicyOptions = {}) {
    this.policy = new UrlPolicy(denyNetworks, options)
  }

  /** Register or update (same `service_id` + `webhook_url`); a `BadRequestError` names what is wrong. */
  async register (input: SubscriptionInput): Promise<{ subscription: SubscriptionView, created: boolean }> {
    const problem = await this.policy.problem(input.webhook_url)
    if (problem !== undefined) throw new BadRequestError(problem)
    let filters: string[]
    try {
      filters = input.topic_filters.map(toMqttFilter)
    } catch (err: unknown) {
      throw new BadRequestError(err instanceof Error ? err.message : String(err))
    }
    const { subscription, created } = this.store.upsert({ ...input, filters })
    await this.#shared?.save(subscription)
    return { subscription: viewOf(subscription), created }
  }

  /** With Redis: load the subscriptions every node shares, and keep this node's copy in step. */
  async share (redis: Redis, onError: (err: unknown) => void): Promise<void> {
    this.#shared = await SharedSubscriptions.start(redis, this.store, onError)
  }

  /** Stop following the shared subscriptions. */
  close (): void {
    this.#shared?.close()
  }

  /** Disable a subscription (its endpoint answered 410 Gone), on every node. */
  async disable (id: string, reason: string): Promise<void> {
    this.store.disable(id, reason)
    const subscription = this.store.get(id)
    if (subscription !== undefined) await this.#shared?.save(subscription)
  }

  /** Deliveries of a subscription queued or waiting for a retry (set by the plugin). */
  depthOf: (id: string) => number = () => 0
  readonly #tallies = new Map<string, DeliveryTally>()

  /** Count a delivery that ended, delivered or failed for good, with the last status its endpoint answered. */
  tally (id: string, outcome: 'delivered' | 'failed', lastStatus: number | undefined): void {
    let tally = this.#tallies.get(id)
    if (tally === undefined) this.#tallies.set(id, tally = { delivered: 0, failed: 0, lastStatus: null, lastAt: null })
    tally[outcome]++
    tally.lastStatus = lastStatus ?? null
    tally.lastAt = new Date().toISOString()
  }

  /** Every subscription with its state: circuit, queue depth, and this node's delivery counts. */
  list (): WebhookListing[] {
    return this.store.list().map((s) => {
      const tally = this.#tallies.get(s.id) ?? { delivered: 0, failed: 0, lastStatus: null, lastAt: null }
      return { ...viewOf(s), breaker: this.breakerState(s.id), queued: this.depthOf(s.id), ...tally }
    })
  }

  async remove (id: string): Promise<boolean> {
    const removed = this.store.delete(id)
    if (removed) {
      this.#tallies.delete(id)
      await this.#shared?.remove(id)
      await this.forget(id)
    }
    return removed
  }
}

/** Deliveries of one subscription that ended on this node since it started. */
interface DeliveryTally {
  delivered: number
  failed: number
  /** The last status its endpoint answered (`null`: none yet, or no answer). */
  lastStatus: number | null
  /** When the last delivery ended (RFC 3339). */
  lastAt: string | null
}

/** A subscription as `GET /api/webhooks` lists it. */
export type WebhookListing = SubscriptionView & Readonly<DeliveryTally> & {
  readonly breaker: BreakerState
  /** Deliveries queued or waiting for a retry (with Redis: on every node, read once a second). */
  readonly queued: number
}

/** Options of the webhooks plugin. */
export interface WebhooksOptions {
  readonly registry: WebhookRegistry
  /** Where a redelivered dead letter is removed from once delivered. */
  readonly deadLetters: DeadLetterStore
  /** Subscriptions from the config file, registered at start-up (a bad one stops it). */
  readonly subscriptions: readonly SubscriptionInput[]
  readonly retry: RetryPolicy
  readonly timeoutMs: number
  readonly concurrency: number
  readonly maxQueued: number
  readonly breaker: { readonly failures: number, readonly halfOpenAfterMs: number }
  /**
   * With Redis: deliveries wait in a durable queue every node shares (BullMQ), each
   * taken by one node, taken over by another if that node dies mid-delivery.
   */
  readonly redis?: { readonly connection: Redis, readonly lockMs: number }
}

/**
 * The HTTP bridge (PRODUCT §4): every accepted CloudEvent whose topic matches a
 * subscription's filters is POSTed to its URL in the CloudEvents HTTP binding,
 * signed when the subscription has a secret. Deliveries are queued from the
 * `published` hook on the node where the event entered, so a publisher never waits
 * for a webhook; 408, 429, 5xx and network errors are retried with backoff, other
 * 4xx fail at once, 410 disables the subscription, a connection to an address in
 * `webhooks.denyNetworks` is refused and fails at once, so does a request that cannot
 * be made (an event binary mode cannot carry, a header undici refuses), and a delivery
 * that fails for good, or finds the queue full, is dead-lettered. Each subscription
 * has its own connections: one endpoint's trouble never holds another's deliveries.
 */
export const webhooks = definePlugin<WebhooksOptions>('webhooks', async (ctx, opts) => {
  const { registry } = opts
  for (const input of opts.subscriptions) await registry.register(input)

  const deliveries = new Counter({ name: 'ce_broker_webhook_deliveries_total', help: 'Webhook deliveries by subscription and outcome (delivered, failed, queue_full)', labelNames: ['subscription', 'outcome'] as const, registers: [ctx.metrics] })
  const latency = new Histogram({ name: 'ce_broker_webhook_delivery_seconds', help: 'Time of the successful attempt of a webhook delivery', labelNames: ['subscription'] as const, buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [ctx.metrics] })

  function deadLetter (job: Job, reason: 'delivery_failed' | 'queue_full', detail: string): void {
    const error = new DeliveryFailedError(reason, job.subscription.id, job.eventId, job.attempts, job.lastStatus, detail)
    ctx.deadLetter({ topic: job.topic, payload: job.raw, qos: 1 }, error, { origin: 'internal', clientId: null, ...(job.replayOf === undefined ? {} : { replayOf: job.replayOf }) })
  }

  const delivery: DeliveryOptions = {
    retry: opts.retry,
    timeoutMs: opts.timeoutMs,
    concurrency: opts.concurrency,
    maxQueued: opts.maxQueued,
    breakerFailures: opts.breaker.failures,
    breakerHalfOpenAfterMs: opts.breaker.halfOpenAfterMs,
    // the address is checked again when connecting: a name may answer otherwise than at registration
    connect: registry.policy.connector(),
    build: (job, now) => buildRequest(job.event, job.raw, job.subscription, job.id, now),
    onDelivered: (job, ms) => {
      if (job.replayOf !== undefined) {
        opts.deadLetters.delete(job.replayOf).catch((err: unknown) => { ctx.reportError(err, { op: 'remove redelivered dead letter', id: job.replayOf }) })
      }
      deliveries.inc({ subscription: job.subscription.id, outcome: 'delivered' })
      registry.tally(job.subscription.id, 'delivered', job.lastStatus)
      latency.observe({ subscription: job.subscription.id }, ms / 1000)
    },
    onFailed: (job, gone) => {
      deliveries.inc({ subscription: job.subscription.id, outcome: 'failed' })
      registry.tally(job.subscription.id, 'failed', job.lastStatus)
      if (gone) {
        registry.disable(job.subscription.id, `${job.subscription.webhook_url} answered 410 Gone`)
          .catch((err: unknown) => { ctx.reportError(err, { op: 'disable subscription', subscription: job.subscription.id }) })
        ctx.log.warn({ subscription: job.subscription.id, url: job.subscription.webhook_url }, 'webhook answered 410 Gone: subscription disabled')
      }
      deadLetter(job, 'delivery_failed', job.lastError ?? 'no answer')
    },
    onError: (err, context) => { ctx.reportError(err, context) }
  }
  const queue: DeliveryQueueLike = opts.redis === undefined ? new DeliveryQueue(delivery) : sharedQueue(opts.redis)

  /** The durable queue of a cluster, with a worker per subscription that follows the shared set. */
  function sharedQueue ({ connection, lockMs }: NonNullable<WebhooksOptions['redis']>): RedisDeliveryQueue {
    // BullMQ blocks on its connections and wants them never to give up on a command
    const redis = connection.duplicate({ maxRetriesPerRequest: null })
    redis.on('error', (err: Error) => { ctx.reportError(err, { op: 'delivery queue connection' }) })
    const shared = new RedisDeliveryQueue({
      ...delivery,
      redis,
      lockMs,
      subscription: (id) => registry.store.get(id),
      event: cloudEventOf,
      onRefused: (job, why) => {
        deliveries.inc({ subscription: job.subscription.id, outcome: 'queue_full' })
        deadLetter(job, 'queue_full', why)
      },
      onOrphaned: (subscription, eventId) => { ctx.log.info({ subscription, eventId }, 'webhook subscription removed: its queued delivery is dropped') }
    })
    shared.follow(registry.store.list())
    registry.store.watch(() => { shared.follow(registry.store.list()) })
    registry.forget = async (id) => { await shared.forget(id) }
    return shared
  }
  registry.breakerState = (id) => queue.breakerState(id)
  registry.depthOf = (id) => queue.depthOf(id)
  const STATE_VALUE: Readonly<Record<BreakerState, number>> = { closed: 0, 'half-open': 1, open: 2 }
  new Gauge({
    name: 'ce_broker_webhook_breaker_state',
    help: 'Circuit of each webhook subscription: 0 closed, 1 half-open, 2 open',
    labelNames: ['subscription'] as const,
    registers: [ctx.metrics],
    collect () {
      this.reset()
      for (const subscription of registry.store.list()) this.set({ subscription: subscription.id }, STATE_VALUE[queue.breakerState(subscription.id)])
    }
  })
  new Gauge({ name: 'ce_broker_webhook_queue_depth', help: 'Webhook deliveries queued or waiting for a retry', registers: [ctx.metrics], collect () { this.set(queue.depth()) } })

  /** Queue one delivery; a full queue dead-letters it. */
  function deliver (subscription: Subscription, topic: string, raw: Buffer, event: CloudEventObject, replayOf?: string): void {
    const job: Job = {
      subscription,
      id: webhookId(subscription.id, event.source, event.id),
      eventId: event.id,
      topic,
      raw,
      event,
      attempts: 0,
      lastStatus: undefined,
      lastError: undefined,
      ...(replayOf === undefined ? {} : { replayOf })
    }
    if (!queue.enqueue(job)) {
      deliveries.inc({ subscription: subscription.id, outcome: 'queue_full' })
      deadLetter(job, 'queue_full', `the delivery queue holds ${opts.maxQueued} deliveries`)
    }
  }

  ctx.hooks.published(function enqueueDeliveries (message: PublishedMessage): void {
    if (registry.store.size === 0 || isReserved(message.topic)) return
    const matching = registry.store.matching(message.topic)
    if (matching.length === 0) return
    const event = cloudEventOf(message.payload)
    if (event === undefined) {
      // accepted on a topic no rule checks, so not dead-lettered here: its subscribers got it as published
      ctx.log.debug({ topic: message.topic }, 'not a CloudEvent (or nested deeper than MAX_JSON_DEPTH): no webhook delivery')
      return
    }
    for (const subscription of matching) deliver(subscription, message.topic, message.payload, event)
  })

  registry.redeliver = (subscriptionId, message, deadLetterId) => {
    const subscription = registry.store.get(subscriptionId)
    if (subscription === undefined) return `webhook subscription ${subscriptionId} no longer exists`
    if (subscription.disabled !== undefined) return `webhook subscription ${subscriptionId} is disabled: ${subscription.disabled.reason}`
    const raw = typeof message.payload === 'string' ? Buffer.from(message.payload) : message.payload
    const event = cloudEventOf(raw)
    if (event === undefined) return 'the dead letter does not hold a CloudEvent'
    deliver(subscription, message.topic, raw, event, deadLetterId)
    return undefined
  }

  ctx.log.info({ subscriptions: registry.store.size }, 'webhooks ready')
  return async function stopWebhooks () {
    registry.breakerState = () => 'closed'
    registry.depthOf = () => 0
    registry.redeliver = () => 'webhooks are not running'
    registry.forget = async () => {}
    await queue.close()
    if (opts.redis !== undefined) registry.store.watch(undefined)
  }
})

type CloudEventObject = Record<string, unknown> & { id: string, source: string }

/**
 * The payload as a CloudEvent object (structured JSON with the required attributes), or
 * `undefined`. JSON nested deeper than `MAX_JSON_DEPTH` is not an event, as on every
 * ingress: a topic no validation rule checks lets it through, and building its request
 * (JSON.stringify of `data` in binary mode) would overflow the stack.
 */
function cloudEventOf (payload: Buffer): CloudEventObject | undefined {
  let value: unknown
  try {
    value = JSON.parse(payload.toString('utf8'))
  } catch {
    // not JSON: not a CloudEvent, which the caller says
    return undefined
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined
  if (mayNestDeeperThan(payload.length, MAX_JSON_DEPTH) && nestedDeeperThan(value, MAX_JSON_DEPTH)) return undefined
  const event = value as Record<string, unknown>
  const { id, source, type, specversion } = event
  if (typeof id !== 'string' || typeof source !== 'string' || typeof type !== 'string' || specversion !== '1.0') return undefined
  return { ...event, id, source }
}

