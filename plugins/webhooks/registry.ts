import { BadRequestError } from '../../src/core/index.js'
import type { BreakerState, DeliveryQueueLike } from './delivery.js'
import type { HandshakeResult } from './handshake.js'
import { InvalidFilterError } from './filters/index.js'
import type { SharedSubscriptions } from './shared.js'
import { toMqttFilter, viewOf, type SubscriptionInput, type SubscriptionStore, type SubscriptionView } from './subscriptions.js'
import type { UrlPolicy } from './url-policy.js'

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
  /** Requests it may have in flight now: its adaptive limit on this node. */
  readonly concurrency: number
  /** Deliveries queued or waiting for a retry (with Redis: on every node, read once a second). */
  readonly queued: number
}

/** How each subscription's deliveries ended on this node: what `GET /api/webhooks` shows beside the circuit. */
export class DeliveryTallies {
  readonly #tallies = new Map<string, DeliveryTally>()

  /** Count a delivery that ended, delivered or failed for good, with the last status its endpoint answered. */
  count (id: string, outcome: 'delivered' | 'failed', lastStatus: number | undefined): void {
    let tally = this.#tallies.get(id)
    if (tally === undefined) this.#tallies.set(id, tally = { delivered: 0, failed: 0, lastStatus: null, lastAt: null })
    tally[outcome]++
    tally.lastStatus = lastStatus ?? null
    tally.lastAt = new Date().toISOString()
  }

  of (id: string): Readonly<DeliveryTally> {
    return this.#tallies.get(id) ?? { delivered: 0, failed: 0, lastStatus: null, lastAt: null }
  }

  forget (id: string): void {
    this.#tallies.delete(id)
  }
}

/** What a registry is made of; each part exists before it. */
export interface WebhookRegistryParts {
  readonly store: SubscriptionStore
  /** Where webhook URLs may point: checked at registration, and by every connection a delivery opens. */
  readonly policy: UrlPolicy
  readonly tallies: DeliveryTallies
  readonly queue: DeliveryQueueLike
  /** With Redis: the subscriptions every node shares. */
  readonly shared: SharedSubscriptions | undefined
  /** The validation handshake with a subscription's endpoint (`handshake: true`). */
  readonly handshake: (input: SubscriptionInput) => Promise<HandshakeResult>
  /** Hears of each subscription refused for its attribute filters (to count and log it). */
  readonly onRefused?: (err: InvalidFilterError) => void
}

/**
 * The webhook subscriptions of a broker, as the HTTP API and the catalog see them:
 * registration checks the body, the filters and the URL; removal drops what still
 * waits for the subscription.
 */
export class WebhookRegistry {
  readonly store: SubscriptionStore
  readonly policy: UrlPolicy
  readonly #parts: WebhookRegistryParts

  constructor (parts: WebhookRegistryParts) {
    this.#parts = parts
    this.store = parts.store
    this.policy = parts.policy
  }

  /**
   * Register or update (same `service_id` + `webhook_url`); a `BadRequestError` names what
   * is wrong (an `InvalidFilterError` for the attribute filters, with their path). With
   * `handshake: true` the endpoint must pass the validation handshake first (again on
   * every registration); `heldOnRefusal` (the config's subscriptions at start-up) keeps
   * one that fails it, disabled with the reason, instead of refusing it.
   */
  async register (input: SubscriptionInput, heldOnRefusal = false): Promise<{ subscription: SubscriptionView, created: boolean }> {
    const problem = await this.policy.problem(input.webhook_url)
    if (problem !== undefined) throw new BadRequestError(problem)
    let mqttFilters: string[]
    try {
      mqttFilters = input.topic_filters.map(toMqttFilter)
    } catch (err: unknown) {
      throw new BadRequestError(err instanceof Error ? err.message : String(err))
    }
    const answer = input.handshake === true ? await this.#parts.handshake(input) : { ok: true as const, allowedRate: undefined }
    const refused = answer.ok ? undefined : `the validation handshake with ${input.webhook_url} failed: ${answer.problem}`
    if (refused !== undefined && !heldOnRefusal) throw new BadRequestError(refused)
    let stored
    try {
      stored = this.store.upsert({ ...input, mqttFilters, ...(answer.ok && answer.allowedRate !== undefined ? { allowedRate: answer.allowedRate } : {}) })
    } catch (err: unknown) {
      if (err instanceof InvalidFilterError) this.#parts.onRefused?.(err)
      throw err
    }
    const { subscription: added, created } = stored
    if (refused !== undefined) this.store.disable(added.id, refused)
    const subscription = this.store.get(added.id) ?? added
    await this.#parts.shared?.save(subscription)
    return { subscription: viewOf(subscription), created }
  }

  /** Disable a subscription (its endpoint answered 410 Gone), on every node. */
  async disable (id: string, reason: string): Promise<void> {
    this.store.disable(id, reason)
    const subscription = this.store.get(id)
    if (subscription !== undefined) await this.#parts.shared?.save(subscription)
  }

  /** Every subscription with its state: circuit, queue depth, and this node's delivery counts. */
  list (): WebhookListing[] {
    const { queue, tallies } = this.#parts
    return this.store.list().map((s) => ({ ...viewOf(s), breaker: queue.breakerState(s.id), concurrency: queue.concurrencyOf(s.id), queued: queue.depthOf(s.id), ...tallies.of(s.id) }))
  }

  async remove (id: string): Promise<boolean> {
    const removed = this.store.delete(id)
    if (removed) {
      this.#parts.tallies.forget(id)
      await this.#parts.shared?.remove(id)
      await this.#parts.queue.forget?.(id)
    }
    return removed
  }
}
