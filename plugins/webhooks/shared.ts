import type { Redis } from 'ioredis'
import type { Subscription, SubscriptionStore } from './subscriptions.js'

const KEY = 'ce-broker:webhooks:subscriptions'
const CHANNEL = 'ce-broker:webhooks:changed'

/**
 * With `--redis`, the subscriptions live in a Redis hash shared by every node; each
 * node keeps a copy in its `SubscriptionStore` (matching stays local and synchronous)
 * and hears of every change on a pub/sub channel, which carries the changed id.
 */
export class SharedSubscriptions {
  readonly #redis: Redis
  readonly #listener: Redis
  readonly #store: SubscriptionStore
  readonly #onError: (err: unknown) => void

  private constructor (redis: Redis, store: SubscriptionStore, onError: (err: unknown) => void) {
    this.#redis = redis
    this.#store = store
    this.#onError = onError
    // a subscribed connection can do nothing else
    this.#listener = redis.duplicate()
  }

  /** Load the shared subscriptions into `store` and follow their changes. */
  static async start (redis: Redis, store: SubscriptionStore, onError: (err: unknown) => void): Promise<SharedSubscriptions> {
    const shared = new SharedSubscriptions(redis, store, onError)
    shared.#listener.on('error', onError)
    shared.#listener.on('message', (_channel: string, id: string) => { shared.#reload(id).catch(onError) })
    await shared.#listener.subscribe(CHANNEL)
    await shared.#reloadAll()
    // changes announced while the listener was away were missed: read the whole set again on every reconnect
    shared.#listener.on('ready', () => { shared.#reloadAll().catch(onError) })
    return shared
  }

  /** Write `subscription` for every node. */
  async save (subscription: Subscription): Promise<void> {
    await this.#redis.multi().hset(KEY, subscription.id, JSON.stringify(subscription)).publish(CHANNEL, subscription.id).exec()
  }

  async remove (id: string): Promise<void> {
    await this.#redis.multi().hdel(KEY, id).publish(CHANNEL, id).exec()
  }

  close (): void {
    this.#listener.disconnect()
  }

  async #reloadAll (): Promise<void> {
    const all = await this.#redis.hgetall(KEY)
    for (const known of this.#store.list()) if (all[known.id] === undefined) this.#store.delete(known.id)
    for (const json of Object.values(all)) this.#put(json)
  }

  async #reload (id: string): Promise<void> {
    const json = await this.#redis.hget(KEY, id)
    if (json === null) this.#store.delete(id)
    else this.#put(json)
  }

  /**
   * Store one subscription, compiling its filters here. A node whose
   * `webhooks.filters` bounds are tighter than those of the node that registered it
   * refuses it: reported, the version it replaces dropped (never delivered to under
   * filters that are no longer its own), and the others load all the same.
   */
  #put (json: string): void {
    const subscription = parse(json)
    try {
      this.#store.put(subscription)
    } catch (err: unknown) {
      this.#store.delete(subscription.id)
      this.#onError(err)
    }
  }
}

/** Written by an earlier version: `filters` held the MQTT form of `topic_filters`, which is now `mqttFilters`. */
interface LegacySubscription extends Omit<Subscription, 'mqttFilters' | 'filters'> {
  readonly filters: readonly string[]
}

function parse (json: string): Subscription {
  // written by save() above, from a checked subscription
  const stored = JSON.parse(json) as Subscription | LegacySubscription
  if ('mqttFilters' in stored) return stored
  const { filters, ...rest } = stored
  return { ...rest, mqttFilters: filters }
}
