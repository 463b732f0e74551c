import { createHash } from 'node:crypto'
import { compileFilter, topicFilterProblem } from '../../src/core/index.js'
import type { WebhookSubscriptionInput } from './config.js'
import { compileFilters, type EventFilter, type FilterLimits } from './filters/index.js'

/** Retry policy of a subscription (PRODUCT §4); every field optional over the defaults. */
export interface RetryPolicy {
  readonly maxAttempts: number
  readonly initialDelayMs: number
  readonly maxDelayMs: number
}

/** A subscription as registered (PRODUCT §4): the config's and the API's format. */
export type SubscriptionInput = WebhookSubscriptionInput

/** A stored subscription: the input (its attribute `filters` as given), its id, its MQTT filters and its state. */
export interface Subscription extends SubscriptionInput {
  readonly id: string
  /** `topic_filters` as MQTT filters (`albergue.v1.booking.*` → `albergue/v1/booking/#`). */
  readonly mqttFilters: readonly string[]
  readonly mode: 'binary' | 'structured'
  readonly createdAt: string
  /** Set when the endpoint answered 410 Gone, or failed its handshake at start-up: nothing more is delivered. */
  readonly disabled?: { readonly at: string, readonly reason: string }
  /** Requests a minute the endpoint allowed in its handshake (`WebHook-Allowed-Rate`); absent: no limit. */
  readonly allowedRate?: number
}

/** What `GET /api/webhooks` shows of a subscription: never its secret. */
export type SubscriptionView = Omit<Subscription, 'secret'> & { readonly hasSecret: boolean }

export function viewOf (subscription: Subscription): SubscriptionView {
  const { secret, ...rest } = subscription
  return { ...rest, hasSecret: secret !== undefined }
}

/**
 * A topic filter in either form PRODUCT §4 allows, as an MQTT filter: MQTT filters
 * (`+`, `#`) as they are; the dotted form maps `.` to `/` and a `*` level to `#` at
 * the end (`albergue.v1.booking.*`) or `+` inside. Returns the filter or throws a
 * message naming the problem.
 */
export function toMqttFilter (filter: string): string {
  const mqtt = filter.includes('/') || filter.includes('+') || filter.includes('#')
    ? filter
    : filter.split('.').map((level, i, levels) => level === '*' ? (i === levels.length - 1 ? '#' : '+') : level).join('/')
  const problem = topicFilterProblem(mqtt)
  if (problem !== undefined) throw new TypeError(`topic filter ${JSON.stringify(filter)} ${problem}`)
  return mqtt
}

/** The id of the subscription of `serviceId` to `url`. */
export function subscriptionId (serviceId: string, url: string): string {
  return `wh_${createHash('sha256').update(`${serviceId}\n${url}`).digest('hex').slice(0, 24)}`
}

/** A subscription whose topic filters match, with the predicate its attribute filters were compiled into. */
export interface MatchingSubscription {
  readonly subscription: Subscription
  readonly accepts: EventFilter
}

interface Entry {
  subscription: Subscription
  readonly matches: ReadonlyArray<(topic: string) => boolean>
  readonly accepts: EventFilter
}

/**
 * Subscriptions by id, with a matcher over their topic filters and a predicate over
 * their attribute filters, both compiled when a subscription is stored (registered
 * here, or read back from Redis: each node compiles the stored JSON once), never per
 * event: this node's copy (with Redis, of the shared set).
 */
export class SubscriptionStore {
  readonly #byId = new Map<string, Entry>()
  readonly #limits: FilterLimits
  #changed: (() => void) | undefined

  /** @param limits bounds of the attribute filters (`webhooks.filters`) */
  constructor (limits: FilterLimits) {
    this.#limits = limits
  }

  /** Call `listener` after every change (one listener; `undefined` stops it). */
  watch (listener: (() => void) | undefined): void {
    this.#changed = listener
  }

  /**
   * Add, or update the one with the same `service_id` and `webhook_url`. The id is
   * derived from those two, so every node of a cluster names a subscription alike.
   */
  upsert (input: SubscriptionInput & { readonly mqttFilters: readonly string[], readonly allowedRate?: number }): { subscription: Subscription, created: boolean } {
    const id = subscriptionId(input.service_id, input.webhook_url)
    const existing = this.#byId.get(id)?.subscription
    const subscription: Subscription = {
      ...input,
      mode: input.mode ?? 'binary',
      id,
      createdAt: existing?.createdAt ?? new Date().toISOString()
    }
    this.put(subscription)
    return { subscription, created: existing === undefined }
  }

  /**
   * Store a subscription as it is (one read back from Redis), compiling its filters;
   * throws an `InvalidFilterError` naming the first one that does not compile, and then
   * stores nothing.
   */
  put (subscription: Subscription): void {
    const accepts = compileFilters(subscription.filters, this.#limits)
    this.#byId.set(subscription.id, { subscription, matches: subscription.mqttFilters.map((f) => compileFilter(f)), accepts })
    this.#changed?.()
  }

  get (id: string): Subscription | undefined {
    return this.#byId.get(id)?.subscription
  }

  list (): Subscription[] {
    return [...this.#byId.values()].map((entry) => entry.subscription)
  }

  delete (id: string): boolean {
    const deleted = this.#byId.delete(id)
    if (deleted) this.#changed?.()
    return deleted
  }

  disable (id: string, reason: string): void {
    const entry = this.#byId.get(id)
    if (entry === undefined) return
    entry.subscription = { ...entry.subscription, disabled: { at: new Date().toISOString(), reason } }
  }

  /** Enabled subscriptions with a topic filter matching `topic`; their attribute filters are the caller's to apply. */
  matching (topic: string): MatchingSubscription[] {
    const out: MatchingSubscription[] = []
    for (const { subscription, matches, accepts } of this.#byId.values()) {
      if (subscription.disabled === undefined && matches.some((match) => match(topic))) out.push({ subscription, accepts })
    }
    return out
  }

  get size (): number {
    return this.#byId.size
  }
}
