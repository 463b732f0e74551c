import { Deliverer, type BreakerState, type DeliveryOptions, type DeliveryQueueLike, type Job } from './delivery.js'

/**
 * The in-memory delivery queue: a FIFO per subscription, as many requests in flight
 * each as its adaptive limit allows (`Deliverer.concurrency`), retries scheduled with
 * backoff; an open circuit holds its subscription's whole queue with one timer. An
 * ordered subscription's deliveries of one key go one at a time: the others of the key
 * wait in its lane. Nothing here is awaited by a publisher: `enqueue` only queues.
 */
export class DeliveryQueue implements DeliveryQueueLike {
  readonly #options: DeliveryOptions
  readonly #deliverer: Deliverer
  readonly #waiting = new Map<string, Job[]>()
  readonly #inFlight = new Map<string, number>()
  readonly #timers = new Set<NodeJS.Timeout>()
  /** Subscriptions whose open circuit has a wake-up timer. */
  readonly #sleeping = new Set<string>()
  #queued = 0
  readonly #queuedBy = new Map<string, number>()
  /** Per ordered subscription, per ordering key: the deliveries waiting behind the one of that key that is out. */
  readonly #lanes = new Map<string, Map<string, Job[]>>()
  #closed = false

  constructor (options: DeliveryOptions, deliverer = new Deliverer(options)) {
    this.#options = options
    this.#deliverer = deliverer
  }

  /** In memory: queued is all there is. */
  written (): undefined {
    return undefined
  }

  depth (): number {
    return this.#queued
  }

  depthOf (subscriptionId: string): number {
    return this.#queuedBy.get(subscriptionId) ?? 0
  }

  enqueue (job: Job): boolean {
    if (this.#closed || this.#queued >= this.#options.maxQueued) return false
    this.#queued++
    this.#count(job.subscription.id, 1)
    if (!this.#behindItsKey(job)) this.#push(job)
    return true
  }

  /**
   * Whether a delivery of `job`'s ordering key is ahead of it (queued, in flight or
   * between attempts): then it waits in its key's lane, not in the subscription's queue,
   * until that one has ended (delivered, or failed for good: the key moves on).
   */
  #behindItsKey (job: Job): boolean {
    if (job.orderingKey === undefined) return false
    const subscriptionId = job.subscription.id
    let lanes = this.#lanes.get(subscriptionId)
    if (lanes === undefined) this.#lanes.set(subscriptionId, lanes = new Map())
    const lane = lanes.get(job.orderingKey)
    if (lane === undefined) {
      // the key's head: it goes now, the next of its key waits in the lane
      lanes.set(job.orderingKey, [])
      return false
    }
    lane.push(job)
    return true
  }

  /** `job` ended: the next delivery of its ordering key, if any, may go. */
  #moveOn (job: Job): void {
    if (job.orderingKey === undefined) return
    const lanes = this.#lanes.get(job.subscription.id)
    const lane = lanes?.get(job.orderingKey)
    const next = lane?.shift()
    if (next !== undefined) {
      this.#push(next)
      return
    }
    lanes?.delete(job.orderingKey)
    if (lanes?.size === 0) this.#lanes.delete(job.subscription.id)
  }

  concurrencyOf (subscriptionId: string): number {
    return this.#deliverer.concurrency(subscriptionId)
  }

  breakerState (subscriptionId: string): BreakerState {
    return this.#deliverer.breakerState(subscriptionId)
  }

  async close (): Promise<void> {
    this.#closed = true
    for (const timer of this.#timers) clearTimeout(timer)
    this.#timers.clear()
    await this.#deliverer.close()
  }

  #push (job: Job): void {
    const key = job.subscription.id
    const list = this.#waiting.get(key)
    if (list === undefined) this.#waiting.set(key, [job])
    else list.push(job)
    this.#pump(key)
  }

  #pump (key: string): void {
    const list = this.#waiting.get(key)
    while (list !== undefined && list.length > 0 && (this.#inFlight.get(key) ?? 0) < this.#deliverer.concurrency(key) && !this.#closed) {
      // asked before each request: an endpoint's allowed rate holds the next one, an open circuit all of them
      const holdMs = this.#deliverer.holdMs(key)
      if (holdMs > 0) {
        // the whole queue waits, with one timer, not one per delivery
        this.#wakeLater(key, holdMs)
        return
      }
      const job = list.shift()
      if (job === undefined) break
      const disabled = this.#options.current(key)?.disabled
      if (disabled !== undefined) {
        // queued before its endpoint answered 410 Gone: dead-lettered, as the shared queue does, and its key moves on
        job.lastError = `the subscription is disabled: ${disabled.reason}`
        this.#options.onFailed(job, 'failed')
        this.#done(job)
        continue
      }
      this.#inFlight.set(key, (this.#inFlight.get(key) ?? 0) + 1)
      this.#deliverer.attempt(job).then((next) => {
        if (next.kind === 'done') this.#done(job)
        else this.#later(job, next.delayMs)
      }, (err: unknown) => {
        // attempt() ends every delivery itself; a rejection comes from past that (onDelivered, onFailed): it is over all the same
        this.#done(job)
        this.#options.onError(err, { op: 'webhook delivery', subscription: key, eventId: job.eventId })
      }).finally(() => {
        this.#inFlight.set(key, (this.#inFlight.get(key) ?? 1) - 1)
        this.#pump(key)
      }).catch((err: unknown) => {
        // a throw of the queue's own bookkeeping: nothing left to end, but not silent
        this.#options.onError(err, { op: 'webhook queue', subscription: key })
      })
    }
    if (list?.length === 0) this.#waiting.delete(key)
  }

  /** A delivery ended: it leaves the queue's counts, and the next of its ordering key may go. */
  #done (job: Job): void {
    this.#queued--
    this.#count(job.subscription.id, -1)
    this.#moveOn(job)
  }

  #count (subscriptionId: string, delta: number): void {
    const n = (this.#queuedBy.get(subscriptionId) ?? 0) + delta
    if (n > 0) this.#queuedBy.set(subscriptionId, n)
    else this.#queuedBy.delete(subscriptionId)
  }

  /** Pump a subscription whose circuit is open again once a probe may go. */
  #wakeLater (key: string, delayMs: number): void {
    if (this.#sleeping.has(key) || this.#closed) return
    this.#sleeping.add(key)
    const timer = setTimeout(() => {
      this.#timers.delete(timer)
      this.#sleeping.delete(key)
      this.#pump(key)
    }, delayMs)
    this.#timers.add(timer)
  }

  /** Put a job back in its subscription's queue after `delayMs`. */
  #later (job: Job, delayMs: number): void {
    if (this.#closed) return
    const timer = setTimeout(() => {
      this.#timers.delete(timer)
      this.#push(job)
    }, delayMs)
    this.#timers.add(timer)
  }
}

/** An error as a dead letter names it: `TypeError: attribute "extra" is an object: ...`. */
