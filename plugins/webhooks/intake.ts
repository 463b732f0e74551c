import { WebhookBacklogError, type PublishAttempt } from '../../src/core/index.js'

export interface IntakeOptions {
  /** `webhooks.intake.highWater`: a subscription with this many deliveries waiting is behind. */
  readonly highWater: number
  /** `webhooks.intake.holdMs`: how long an MQTT publish bound for it waits at most. */
  readonly holdMs: number
  /** Deliveries waiting for a subscription (queued or between attempts). */
  readonly depthOf: (subscriptionId: string) => number
  /** The subscriptions (ids) a publish on `topic` is bound for. */
  readonly matching: (topic: string) => readonly string[]
  /** A publish was held (`outcome: held`), let through when its hold ran out (`timeout`), or refused over HTTP (`refused`); `clientId` is `null` over HTTP. */
  readonly onIntake: (subscriptionId: string, outcome: 'held' | 'timeout' | 'refused', clientId: string | null) => void
}

/** How often waiting publishes look at the depth again: the memory queue's depth is exact, Redis' is read once a second. */
const POLL_MS = 20

interface Waiter {
  readonly subscriptionId: string
  readonly until: number
  readonly resolve: (drained: boolean) => void
}

/** How long an admitted publish counts towards its subscriptions' depth before its deliveries are queued (one refused later never is). */
const PENDING_MS = 2_000

/**
 * Backpressure from webhook subscriptions to publishers. A publish bound for a
 * subscription that is behind (`highWater` deliveries waiting) is slowed down before
 * anything is dead-lettered: over MQTT it waits in authorizePublish, not acked (aedes
 * writes PUBACK after that hook, and reads the client's next packets only once the ones
 * it is handling are done, so TCP pushes back on that publisher alone), until the
 * subscription is down to half of `highWater`, or `holdMs` has passed (then it goes on;
 * a delivery is dead-lettered `queue_full` only once `webhooks.maxQueued` is reached);
 * over HTTP it is refused at once with 429 and `Retry-After`. aedes hands a client's
 * packets read together to the hook together, before any of them is queued: so what
 * was let through and is not queued yet counts as waiting too (for `PENDING_MS` at most).
 */
export class IntakeGate {
  readonly #options: IntakeOptions
  readonly #waiting: Waiter[] = []
  /** Publishes let through and not queued yet, by subscription, and since when the count runs. */
  readonly #pending = new Map<string, { count: number, since: number }>()
  /** Per client, the end of its last publish held (or waiting behind one held). */
  readonly #tails = new Map<string, Promise<void>>()
  #timer: NodeJS.Timeout | undefined
  #closed = false

  constructor (options: IntakeOptions) {
    this.#options = options
  }

  /**
   * The authorizePublish step: `undefined` when the publish may go on now, else the wait
   * for it; an HTTP one is refused (429) instead. While a client has a publish held, its
   * later ones wait behind it, whatever they are bound for: aedes hands a client's
   * packets read together to the hook together, and one let through past a held one
   * would be accepted out of the order it was sent in.
   */
  admit (attempt: PublishAttempt): Promise<void> | undefined {
    if (this.#closed) return undefined
    const subscriptions = this.#options.matching(attempt.topic)
    const client = attempt.origin === 'http' || attempt.origin === 'internal' ? undefined : attempt.clientId ?? undefined
    const tail = client === undefined ? undefined : this.#tails.get(client)
    const work = tail === undefined ? this.#decide(attempt, subscriptions) : tail.then(() => this.#decide(attempt, subscriptions))
    if (work === undefined || client === undefined) return work
    const tracked: Promise<void> = work.finally(() => { if (this.#tails.get(client) === tracked) this.#tails.delete(client) })
    this.#tails.set(client, tracked)
    return tracked
  }

  /** Let a publish bound for `subscriptions` through (counted as pending), hold it, or refuse it (HTTP). */
  #decide (attempt: PublishAttempt, subscriptions: readonly string[]): Promise<void> | undefined {
    if (subscriptions.length === 0) return undefined
    const behind = this.#closed || attempt.origin === 'internal' ? undefined : this.#behind(subscriptions)
    if (behind === undefined) {
      this.#count(subscriptions, 1)
      return undefined
    }
    if (attempt.origin === 'http') {
      this.#options.onIntake(behind, 'refused', null)
      throw new WebhookBacklogError(behind, this.#depth(behind))
    }
    this.#options.onIntake(behind, 'held', attempt.clientId)
    return this.#wait(behind).then((drained) => {
      if (!drained) this.#options.onIntake(behind, 'timeout', attempt.clientId)
      this.#count(subscriptions, 1)
    })
  }

  /** A publish's deliveries to `subscriptions` are queued: the queue's depth counts them from now on. */
  queued (subscriptions: readonly string[]): void {
    this.#count(subscriptions, -1)
  }

  /** Let every held publish go, and hold none from now on (the broker is closing). */
  close (): void {
    this.#closed = true
    clearInterval(this.#timer)
    this.#timer = undefined
    for (const waiter of this.#waiting.splice(0)) waiter.resolve(false)
  }

  /** The first of `subscriptions` with `highWater` deliveries or more waiting. */
  #behind (subscriptions: readonly string[]): string | undefined {
    for (const id of subscriptions) {
      if (this.#depth(id) >= this.#options.highWater) return id
    }
    return undefined
  }

  /** Deliveries waiting for a subscription, and those of publishes let through but not queued yet. */
  #depth (subscriptionId: string): number {
    const pending = this.#pending.get(subscriptionId)
    const counted = pending === undefined || Date.now() - pending.since > PENDING_MS ? 0 : pending.count
    return this.#options.depthOf(subscriptionId) + counted
  }

  #count (subscriptions: readonly string[], delta: number): void {
    const now = Date.now()
    for (const id of subscriptions) {
      const pending = this.#pending.get(id)
      // a count that ran for PENDING_MS starts over: what a refusal after this hook left in it goes
      if (pending === undefined || now - pending.since > PENDING_MS) {
        if (delta > 0) this.#pending.set(id, { count: delta, since: now })
        else this.#pending.delete(id)
      } else {
        pending.count = Math.max(0, pending.count + delta)
      }
    }
  }

  async #wait (subscriptionId: string): Promise<boolean> {
    return await new Promise<boolean>((resolve) => {
      this.#waiting.push({ subscriptionId, until: Date.now() + this.#options.holdMs, resolve })
      this.#timer ??= setInterval(() => { this.#release() }, POLL_MS)
    })
  }

  /** Let go, in the order they came, the publishes whose subscription is down to half of `highWater` or whose hold ran out. */
  #release (): void {
    const now = Date.now()
    const lowWater = Math.floor(this.#options.highWater / 2)
    for (let i = 0; i < this.#waiting.length;) {
      const waiter = this.#waiting[i]
      if (waiter === undefined) break
      const drained = this.#depth(waiter.subscriptionId) <= lowWater
      if (drained || now >= waiter.until) {
        this.#waiting.splice(i, 1)
        waiter.resolve(drained)
      } else {
        i++
      }
    }
    if (this.#waiting.length === 0) {
      clearInterval(this.#timer)
      this.#timer = undefined
    }
  }
}
