import { DelayedError, Queue, Worker, type Job as BullJob } from 'bullmq'
import type { Redis } from 'ioredis'
import { Deliverer, type BreakerState, type DeliveryOptions, type DeliveryQueueLike, type Job } from './delivery.js'
import { RedisLanes } from './redis-lanes.js'
import type { Subscription } from './subscriptions.js'
import type { TraceCarrier } from '../../src/core/index.js'

/** A delivery as it waits in Redis: what a node needs to rebuild the job. */
interface StoredDelivery {
  readonly webhookId: string
  readonly eventId: string | undefined
  readonly topic: string
  /** The event's bytes as published, base64. */
  readonly payload: string
  readonly replayOf?: string
  /** The delivery's ordering key (an ordered subscription's): it waits in its key's lane until it is the head. */
  readonly orderingKey?: string
  /** When the event was accepted (ms since the epoch); deliveries stored before it was kept take the job's own creation time. */
  readonly acceptedAt?: number
  /** With tracing on, the event's `receive` span: whichever node delivers it, each attempt's span is its child. */
  readonly trace?: TraceCarrier
  readonly attempts: number
  readonly lastStatus?: number
  readonly lastError?: string
}

export interface RedisQueueOptions extends DeliveryOptions {
  /** A connection with `maxRetriesPerRequest: null` (BullMQ's requirement), owned by the queue: closed with it. Each worker duplicates it. */
  readonly redis: Redis
  /** How long a node's hold on a delivery lasts without renewal; a node that dies mid-delivery is taken over within about twice this. */
  readonly lockMs: number
  /** The stored event back as an object; `undefined` if it is not one (it was checked when queued). */
  readonly event: (raw: Buffer) => Record<string, unknown> | undefined
  /** Redis did not take a delivery: it is dead-lettered (`queue_full`). */
  readonly onRefused: (job: Job, why: string) => void
  /** A stored delivery whose subscription was removed: it is dropped. */
  readonly onOrphaned: (subscriptionId: string, eventId: string | undefined) => void
}

/** Finished jobs leave Redis at once: the delivery's outcome is in the metrics and the dead letters. */
const DONE_JOBS = { removeOnComplete: true, removeOnFail: true } as const
/** Lane heads without their job are looked for every this many depth reads (seconds). */
const SWEEP_EVERY = 5

/** A lane entry's delivery, as `storedOf` wrote it. */
function parseStored (payload: string): StoredDelivery {
  return JSON.parse(payload) as StoredDelivery
}

/** BullMQ keys live under this prefix; one queue per subscription, named by its id. */
const PREFIX = 'ce-broker:webhooks'
/** How often the queue depth is read from Redis: `maxQueued` is checked against that figure. */
const DEPTH_REFRESH_MS = 1000
/** A delivery whose node died this many times over its life is given up and dead-lettered. */
const MAX_STALLED = 10
/** Jobs an open circuit holds come back spread over this much past the hold, not all at once. */
const HOLD_SPREAD_MS = 1000

/**
 * The durable delivery queue of a cluster (BullMQ on the shared Redis): one queue per
 * subscription, and on every node one worker per subscription running as many
 * deliveries as the subscription's adaptive limit allows (at most `concurrency`), so a slow endpoint holds only its own queue. A delivery
 * is taken by one node at a time; if that node dies mid-delivery its lock runs out
 * and another node takes the job over (at least once: the receiver may see the
 * attempt twice, with the same `webhook-id`). Retries and circuit holds go back to
 * Redis as delayed jobs, so they survive the node too. Attempts, backoff, breakers
 * and the HTTP work are the `Deliverer`'s, as in memory; the breakers are per node.
 */
export class RedisDeliveryQueue implements DeliveryQueueLike {
  readonly #options: RedisQueueOptions
  readonly #deliverer: Deliverer
  readonly #queues = new Map<string, Queue<StoredDelivery>>()
  readonly #workers = new Map<string, Worker<StoredDelivery>>()
  /** Workers of removed subscriptions still finishing their deliveries. */
  readonly #closing = new Set<Promise<void>>()
  readonly #timer: NodeJS.Timeout
  #depth = 0
  #depthBy: ReadonlyMap<string, number> = new Map()
  #reading = false
  #closed = false
  /** This turn's jobs, by subscription, written at the end of the turn; and the promise of that write. */
  #batch = new Map<string, Job[]>()
  #batchWritten: Promise<void> | undefined
  readonly #lanes: RedisLanes
  #sweeps = 0

  constructor (options: RedisQueueOptions) {
    this.#options = options
    this.#deliverer = new Deliverer(options)
    this.#lanes = new RedisLanes(options.redis)
    this.#timer = setInterval(() => {
      // one read at a time: while Redis is away a read waits, it does not pile up
      if (this.#reading) return
      this.#reading = true
      const sweep = ++this.#sweeps % SWEEP_EVERY === 0 ? this.#sweep() : Promise.resolve()
      sweep.then(async () => await this.#readDepth()).then((depths) => {
        this.#depthBy = depths
        this.#depth = 0
        for (const n of depths.values()) this.#depth += n
      }, (err: unknown) => { this.#options.onError(err, { op: 'queue depth' }) })
        .finally(() => { this.#reading = false })
    }, DEPTH_REFRESH_MS)
    this.#timer.unref()
  }

  /** Keep a worker for each subscription and none for those gone: call with every subscription the node knows, whenever they change. */
  follow (subscriptions: readonly Subscription[]): void {
    if (this.#closed) return
    const ids = new Set(subscriptions.map((s) => s.id))
    for (const id of ids) if (!this.#workers.has(id)) this.#workers.set(id, this.#startWorker(id))
    for (const [id, worker] of this.#workers) {
      if (ids.has(id)) continue
      this.#workers.delete(id)
      const queue = this.#queues.get(id)
      this.#queues.delete(id)
      const closing = Promise.all([worker.close(), queue?.close()])
        .then(() => undefined, (err: unknown) => { this.#options.onError(err, { op: 'close worker', subscription: id }) })
      this.#closing.add(closing)
      void closing.finally(() => { this.#closing.delete(closing) })
    }
  }

  /** A subscription was removed through this node: its waiting deliveries are dropped from Redis, for every node. */
  async forget (subscriptionId: string): Promise<void> {
    const queue = new Queue<StoredDelivery>(subscriptionId, { connection: this.#options.redis, prefix: PREFIX })
    try {
      await queue.obliterate({ force: true })
      await this.#lanes.forget(subscriptionId)
    } finally {
      await queue.close()
    }
  }

  enqueue (job: Job): boolean {
    if (this.#closed || this.#depth >= this.#options.maxQueued) return false
    this.#depth++
    let jobs = this.#batch.get(job.subscription.id)
    if (jobs === undefined) this.#batch.set(job.subscription.id, jobs = [])
    jobs.push(job)
    this.#batchWritten ??= new Promise((resolve) => { setImmediate(() => { this.#write().then(resolve) }) })
    return true
  }

  written (): Promise<void> | undefined {
    return this.#batchWritten
  }

  /**
   * The turn's jobs, one `addBulk` per subscription, all on the queue's connection in
   * the same turn, so ioredis sends them together. Never rejects: a job Redis refuses is
   * dead-lettered (`onRefused`). Each job's id is the delivery's `webhook-id`, so an
   * event published again from a node's journal while its first delivery still waits
   * is not queued twice.
   */
  async #write (): Promise<void> {
    const batch = this.#batch
    this.#batch = new Map()
    this.#batchWritten = undefined
    await Promise.all([...batch].map(async ([subscriptionId, jobs]) => {
      try {
        // an ordered delivery becomes a job once it is its key's head; until then it waits in its lane
        const heads = await this.#lanes.append(subscriptionId, jobs.flatMap((job) => job.orderingKey === undefined ? [] : [{ key: job.orderingKey, jobId: jobIdOf(job), payload: JSON.stringify(storedOf(job)) }]))
        const ready = jobs.filter((job) => job.orderingKey === undefined || heads.shift() === true)
        await this.#queue(subscriptionId).addBulk(ready.map((job) => ({ name: 'deliver', data: storedOf(job), opts: { jobId: jobIdOf(job), ...DONE_JOBS } })))
      } catch (err: unknown) {
        const why = `the delivery queue in Redis refused it: ${err instanceof Error ? err.message : String(err)}`
        for (const job of jobs) this.#options.onRefused(job, why)
      }
    }))
  }

  /** As last read from Redis (once a second), plus what this node added since. */
  depth (): number {
    return this.#depth
  }

  /** As last read from Redis (once a second), every node's deliveries for the subscription. */
  depthOf (subscriptionId: string): number {
    return this.#depthBy.get(subscriptionId) ?? 0
  }

  concurrencyOf (subscriptionId: string): number {
    return this.#deliverer.concurrency(subscriptionId)
  }

  breakerState (subscriptionId: string): BreakerState {
    return this.#deliverer.breakerState(subscriptionId)
  }

  async close (): Promise<void> {
    this.#closed = true
    clearInterval(this.#timer)
    // workers first: a delivery in flight finishes (or goes back to Redis) before the pool closes
    await Promise.all([...this.#workers.values()].map(async (worker) => { await worker.close() }))
    await Promise.all(this.#closing)
    await Promise.all([...this.#queues.values()].map(async (queue) => { await queue.close() }))
    this.#workers.clear()
    this.#queues.clear()
    await this.#deliverer.close()
    await leave(this.#options.redis)
  }

  #queue (subscriptionId: string): Queue<StoredDelivery> {
    let queue = this.#queues.get(subscriptionId)
    if (queue === undefined) {
      queue = new Queue<StoredDelivery>(subscriptionId, { connection: this.#options.redis, prefix: PREFIX })
      queue.on('error', (err) => { this.#options.onError(err, { op: 'queue', subscription: subscriptionId }) })
      this.#queues.set(subscriptionId, queue)
    }
    return queue
  }

  async #readDepth (): Promise<Map<string, number>> {
    const depths = new Map<string, number>()
    for (const id of this.#workers.keys()) {
      const counts = await this.#queue(id).getJobCounts('waiting', 'delayed', 'active', 'prioritized')
      let depth = await this.#lanes.waiting(id)
      for (const n of Object.values(counts)) depth += n
      depths.set(id, depth)
    }
    return depths
  }

  #startWorker (subscriptionId: string): Worker<StoredDelivery> {
    const worker = new Worker<StoredDelivery>(subscriptionId, async (bullJob, token) => { await this.#process(bullJob, token) }, {
      connection: this.#options.redis,
      prefix: PREFIX,
      concurrency: this.#deliverer.concurrency(subscriptionId),
      lockDuration: this.#options.lockMs,
      stalledInterval: this.#options.lockMs,
      maxStalledCount: MAX_STALLED
    })
    worker.on('error', (err) => { this.#options.onError(err, { op: 'worker', subscription: subscriptionId }) })
    worker.on('failed', (bullJob, err) => {
      // what the processor does not handle: it stalled too often, or an unexpected error
      const job = bullJob === undefined ? undefined : this.#jobOf(bullJob, this.#options.current(subscriptionId))
      if (job === undefined) {
        this.#options.onError(err, { op: 'delivery', subscription: subscriptionId })
        return
      }
      job.lastError = err.message
      this.#options.onFailed(job, 'failed')
      if (bullJob !== undefined) this.#moveOn(bullJob).catch((moveErr: unknown) => { this.#options.onError(moveErr, { op: 'ordering lane', subscription: subscriptionId }) })
    })
    return worker
  }

  /** A delivery of an ordering key ended (delivered, or failed for good): the next of its key becomes a job. */
  async #moveOn (bullJob: BullJob<StoredDelivery>): Promise<void> {
    const key = bullJob.data.orderingKey
    if (key === undefined || bullJob.id === undefined) return
    const next = await this.#lanes.advance(bullJob.queueName, key, bullJob.id)
    if (next !== undefined) await this.#queue(bullJob.queueName).add('deliver', parseStored(next.payload), { jobId: next.jobId, ...DONE_JOBS })
  }

  /**
   * Queue again every lane head whose job is missing: its node died between moving the
   * lane on and adding the job. Looked at twice, so a head that ended meanwhile is not
   * sent again (one that ends between the two looks may be: at least once, same `webhook-id`).
   */
  async #sweep (): Promise<void> {
    // every subscription's: one ordered before it was registered again without ordering may still hold lanes
    for (const id of this.#workers.keys()) {
      const queue = this.#queue(id)
      for (const head of await this.#lanes.heads(id)) {
        if (await queue.getJob(head.jobId) !== undefined) continue
        const still = (await this.#lanes.heads(id)).some((h) => h.jobId === head.jobId)
        if (still) await queue.add('deliver', parseStored(head.payload), { jobId: head.jobId, ...DONE_JOBS })
      }
    }
  }

  /** One attempt of a stored delivery; a retry or a hold goes back to Redis as a delayed job. */
  async #process (bullJob: BullJob<StoredDelivery>, token: string | undefined): Promise<void> {
    const subscription = this.#options.current(bullJob.queueName)
    const job = this.#jobOf(bullJob, subscription)
    if (subscription === undefined || job === undefined) {
      this.#options.onOrphaned(bullJob.queueName, bullJob.data.eventId)
      await this.#moveOn(bullJob)
      return
    }
    if (subscription.disabled !== undefined) {
      job.lastError = `the subscription is disabled: ${subscription.disabled.reason}`
      this.#options.onFailed(job, 'failed')
      await this.#moveOn(bullJob)
      return
    }
    const next = await this.#deliverer.attempt(job)
    // the subscription's adaptive limit, as this attempt left it
    const worker = this.#workers.get(bullJob.queueName)
    const limit = this.#deliverer.concurrency(bullJob.queueName)
    if (worker !== undefined && worker.concurrency !== limit) worker.concurrency = limit
    if (next.kind === 'done') {
      // while this job is still active: a sweep never finds the lane's head without its job
      await this.#moveOn(bullJob)
      return
    }
    if (next.kind === 'held') {
      // not tried: nothing to write back; spread out, so that the end of the hold is not a burst
      await bullJob.moveToDelayed(Date.now() + next.delayMs + Math.floor(Math.random() * HOLD_SPREAD_MS), token)
      throw new DelayedError()
    }
    await bullJob.updateData({ ...bullJob.data, attempts: job.attempts, ...(job.lastStatus === undefined ? {} : { lastStatus: job.lastStatus }), ...(job.lastError === undefined ? {} : { lastError: job.lastError }) })
    await bullJob.moveToDelayed(Date.now() + next.delayMs, token)
    // tells BullMQ the job was moved, not finished
    throw new DelayedError()
  }

  #jobOf (bullJob: BullJob<StoredDelivery>, subscription: Subscription | undefined): Job | undefined {
    const data = bullJob.data
    const raw = Buffer.from(data.payload, 'base64')
    const event = this.#options.event(raw)
    if (subscription === undefined || event === undefined) return undefined
    return {
      subscription,
      id: data.webhookId,
      eventId: data.eventId,
      topic: data.topic,
      raw,
      event,
      acceptedAt: data.acceptedAt ?? bullJob.timestamp,
      attempts: data.attempts,
      lastStatus: data.lastStatus,
      lastError: data.lastError,
      ...(data.replayOf === undefined ? {} : { replayOf: data.replayOf }),
      ...(data.orderingKey === undefined ? {} : { orderingKey: data.orderingKey }),
      ...(data.trace === undefined ? {} : { trace: data.trace })
    }
  }
}

function storedOf (job: Job): StoredDelivery {
  return {
    webhookId: job.id,
    eventId: job.eventId,
    topic: job.topic,
    payload: job.raw.toString('base64'),
    acceptedAt: job.acceptedAt,
    attempts: job.attempts,
    ...(job.replayOf === undefined ? {} : { replayOf: job.replayOf }),
    ...(job.orderingKey === undefined ? {} : { orderingKey: job.orderingKey }),
    ...(job.trace === undefined ? {} : { trace: job.trace })
  }
}

/** The BullMQ job id: the `webhook-id`, and for a redriven dead letter its id too (BullMQ refuses `:` in ids). */
function jobIdOf (job: Job): string {
  return job.replayOf === undefined ? job.id : `${job.id}-replay-${job.replayOf.replaceAll(':', '_')}`
}

/** How long closing waits for Redis to answer QUIT, in ms. */
const QUIT_WAIT_MS = 1_000

/**
 * QUIT, so commands still on their way (a job being added) are answered first; but only
 * on a connection that is up, and not for long. On one reconnecting to a Redis that is
 * gone, QUIT would wait in the offline queue behind what is there (ioredis' own
 * CLIENT SETNAME) for as long as Redis stays away.
 */
async function leave (redis: RedisQueueOptions['redis']): Promise<void> {
  if (redis.status === 'ready') {
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<void>((resolve) => { timer = setTimeout(resolve, QUIT_WAIT_MS) })
    await Promise.race([redis.quit().catch(() => {}), late])
    clearTimeout(timer)
  }
  redis.disconnect()
}
