/**
 * `limits.maxSubscriptionsPerClient`: the filters a client holds, counted as aedes
 * keeps them, plus those approved for the SUBSCRIBE aedes is still checking.
 */

/** What aedes' client shows of its subscriptions: an object keyed by filter. */
function heldBy (client: object): object {
  const held: unknown = Reflect.get(client, 'subscriptions')
  return typeof held === 'object' && held !== null ? held : {}
}

export class SubscriptionQuota {
  readonly #max: number
  /**
   * Filters approved but not yet held: aedes checks every filter of a SUBSCRIBE before
   * it stores any, so those of the same packet count too. Dropped once aedes holds
   * them (`settled`) or the client is gone (a weak key).
   */
  readonly #approved = new WeakMap<object, Set<string>>()

  constructor (max: number) {
    this.#max = max
  }

  /** Whether `client` may hold `filter` as well; an admitted filter counts until `settled`. */
  admit (client: object, filter: string): boolean {
    const holds = heldBy(client)
    const waiting = this.#approved.get(client) ?? new Set<string>()
    // aedes keeps a client's subscriptions by filter; subscribing to one it holds replaces it
    if (Object.hasOwn(holds, filter) || waiting.has(filter)) return true
    let count = Object.keys(holds).length
    for (const approved of waiting) if (!Object.hasOwn(holds, approved)) count++
    if (count >= this.#max) return false
    waiting.add(filter)
    this.#approved.set(client, waiting)
    return true
  }

  /** aedes holds the client's SUBSCRIBE now: its filters count from there. */
  settled (client: object): void {
    this.#approved.delete(client)
  }
}
