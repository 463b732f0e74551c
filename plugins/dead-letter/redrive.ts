import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { Counter, type Registry } from 'prom-client'
import { LogSampler, type Logger } from '../../src/core/index.js'
import { SAMPLE_SIZE, type RedriveRequest } from './redrive-filter.js'
import { BUSY, type RedriveJob, type RedriveJobStore, type Settled } from './redrive-jobs.js'
import { replayEntry, type ReplaySource } from './replay.js'
import type { DeadLetterRecord } from './store.js'

/** Entries read per page while a redrive looks for matches. */
const SCAN_PAGE = 500
/** How often a resume asks again while the entry in hand of a stopped job is finished. */
const BUSY_POLL_MS = 25

/** What a redrive is made of. */
export interface RedriveOptions {
  readonly source: ReplaySource
  readonly jobs: RedriveJobStore
  readonly nodeId: string
  /** `deadLetters.replayRatePerSecond`: at most this many replays a second. */
  readonly ratePerSecond: number
  readonly log: Logger
  /** `deadLetters.replayLeaseMs`: how long a resume waits for a stopped job's entry in hand. */
  readonly leaseMs: number
  /** `limits.clientLogIntervalMs`: at most one start and one end line per this many ms. */
  readonly logIntervalMs: number
  readonly metrics: Registry
  readonly reportError: (err: unknown, context?: Readonly<Record<string, unknown>>) => void
}

/** What a dry run finds. */
export interface RedrivePreview {
  readonly matched: number
  readonly sample: ReadonlyArray<{ readonly id: string, readonly record: DeadLetterRecord }>
}

/** How a replay of one entry counts: the metric's outcome, and the job's counter. */
type Outcome = 'accepted' | 'redelivering' | 'refused' | 'unredeliverable' | 'gone' | 'error'
const SETTLED: Readonly<Record<Outcome, Settled>> = {
  accepted: 'replayed', redelivering: 'replayed', refused: 'failed', unredeliverable: 'failed', gone: 'skipped', error: 'failed'
}

/**
 * Bulk redrive of dead letters (`POST /api/dlq/replay`): the entries matching a filter,
 * oldest first, each replayed once as `POST /api/dlq/:id/replay` does, at most
 * `ratePerSecond` a second. The job and its position live in the job store, so a
 * stopped job, or one whose node went away, continues where it was on any node; the
 * entry in hand is marked before its replay, so a job resumed after a crash knows
 * whether that entry had its turn.
 */
export class Redrive {
  readonly #options: RedriveOptions
  readonly #intervalMs: number
  readonly #outcomes: Counter<'outcome'>
  readonly #paced: Counter
  readonly #sampler: LogSampler
  /** The jobs this node runs, by id. */
  readonly #running = new Map<string, Promise<void>>()
  readonly #abort = new AbortController()

  constructor (options: RedriveOptions) {
    this.#options = options
    this.#intervalMs = 1000 / options.ratePerSecond
    this.#sampler = new LogSampler(options.logIntervalMs)
    this.#outcomes = new Counter({
      name: 'ce_broker_dead_letter_redrive_total',
      help: 'Dead letters a bulk redrive replayed, by outcome: accepted, redelivering, refused, unredeliverable, gone, error',
      labelNames: ['outcome'] as const,
      registers: [options.metrics]
    })
    this.#paced = new Counter({ name: 'ce_broker_dead_letter_redrive_paced_total', help: 'Bulk redrive replays that waited for deadLetters.replayRatePerSecond', registers: [options.metrics] })
  }

  /** The entries a redrive of `request` would replay, and the first few of them. */
  async preview (request: RedriveRequest): Promise<RedrivePreview> {
    const found = await this.#matching(request)
    return { matched: found.ids.length, sample: found.sample }
  }

  /** Start a job; the running job instead when there is one (nothing is started then). */
  async start (request: RedriveRequest): Promise<{ readonly job: RedriveJob, readonly started: boolean }> {
    const { ids } = await this.#matching(request)
    const job: RedriveJob = {
      id: randomUUID(),
      state: 'running',
      filter: request.filter,
      matched: ids.length,
      replayed: 0,
      failed: 0,
      skipped: 0,
      remaining: ids.length,
      startedAt: new Date().toISOString(),
      node: this.#options.nodeId
    }
    const running = await this.#options.jobs.create(job, ids, Date.now())
    if (running !== undefined) return { job: running, started: false }
    this.#line('start', { job: job.id, filter: job.filter, matched: job.matched }, 'dead-letter redrive started')
    this.#launch(job.id)
    return { job: (await this.#options.jobs.get(job.id)) ?? job, started: true }
  }

  async get (id: string): Promise<RedriveJob | undefined> {
    return await this.#options.jobs.get(id)
  }

  /** Stop a running job after the entry in hand: its position is kept for `resume`. */
  async stop (id: string): Promise<RedriveJob | undefined> {
    const job = await this.#options.jobs.get(id)
    if (job?.state !== 'running') return job
    return await this.#options.jobs.end(id, 'stopped', new Date().toISOString())
  }

  /** Continue a stopped job, or one whose node stopped renewing its lease, on this node: the job, or why not. */
  async resume (id: string): Promise<RedriveJob | string> {
    const local = this.#running.get(id)
    if (local !== undefined) {
      if ((await this.#options.jobs.get(id))?.state === 'running') return `redrive job ${id} is running on node ${this.#options.nodeId}`
      // stopped: its loop ends after the entry in hand
      await local
    }
    let claimed = await this.#options.jobs.claim(id, this.#options.nodeId, Date.now())
    // stopped on another node, which finishes the entry in hand: a moment, at most its lease
    const until = Date.now() + this.#options.leaseMs
    while (claimed === BUSY && Date.now() < until) {
      await sleep(BUSY_POLL_MS)
      claimed = await this.#options.jobs.claim(id, this.#options.nodeId, Date.now())
    }
    if (typeof claimed === 'string') return claimed
    this.#line('start', { job: id, remaining: claimed.remaining, resumed: true }, 'dead-letter redrive resumed')
    this.#launch(id)
    return claimed
  }

  /** Stop this node's jobs after the entry in hand, marked `stopped` so another node may resume them at once. */
  async close (): Promise<void> {
    this.#abort.abort()
    const ids = [...this.#running.keys()]
    await Promise.all(this.#running.values())
    for (const id of ids) await this.stop(id)
  }

  #launch (id: string): void {
    const run = this.#run(id).catch(async (err: unknown) => {
      this.#options.reportError(err, { op: 'dead-letter redrive', job: id })
      // resumable once the trouble is over
      await this.stop(id)
    }).catch((err: unknown) => { this.#options.reportError(err, { op: 'stop dead-letter redrive', job: id }) })
      .finally(() => { this.#running.delete(id) })
    this.#running.set(id, run)
  }

  async #run (id: string): Promise<void> {
    const { jobs, nodeId } = this.#options
    let nextAt = 0
    while (!this.#abort.signal.aborted) {
      const step = await jobs.step(id, nodeId, Date.now())
      // stopped, or taken over by another node
      if (step === undefined) return
      const entryId = step.inFlight?.id ?? step.next
      if (entryId === undefined) {
        const done = await jobs.end(id, 'done', new Date().toISOString())
        this.#line('end', { job: id, matched: done?.matched, replayed: done?.replayed, failed: done?.failed, skipped: done?.skipped }, 'dead-letter redrive done')
        return
      }
      const wait = nextAt - performance.now()
      if (wait > 0) {
        this.#paced.inc()
        await sleep(wait, undefined, { signal: this.#abort.signal }).catch(() => undefined)
        if (this.#abort.signal.aborted) return
      }
      nextAt = Math.max(nextAt, performance.now()) + this.#intervalMs
      const outcome = step.inFlight === undefined ? await this.#replay(id, entryId) : await this.#finishInFlight(id, step.inFlight)
      // stopped or taken over between the step and the mark: not ours to replay
      if (outcome === undefined) return
      this.#outcomes.inc({ outcome })
      await jobs.settle(id, entryId, SETTLED[outcome])
    }
  }

  /** Replay one entry, marked as taken first; `undefined` when the job no longer runs here. */
  async #replay (jobId: string, entryId: string): Promise<Outcome | undefined> {
    if (!await this.#options.jobs.begin(jobId, entryId, this.#options.nodeId, Date.now())) return undefined
    const entry = await this.#options.source.deadLetters.get(entryId)
    if (entry === undefined) return 'gone'
    // a replay may take longer than the lease (a commit waiting out a Redis outage): renewed meanwhile, so no other node takes the entry in hand
    const renew = setInterval(() => {
      this.#options.jobs.step(jobId, this.#options.nodeId, Date.now()).catch((err: unknown) => { this.#options.reportError(err, { op: 'dead-letter redrive lease', job: jobId }) })
    }, Math.max(50, Math.floor(this.#options.leaseMs / 3)))
    try {
      return (await replayEntry(this.#options.source, entry)).outcome
    } catch (err: unknown) {
      // the broker could not take it (not the event's fault): counted as failed, kept as it was
      this.#options.reportError(err, { op: 'dead-letter redrive replay', job: jobId, id: entryId })
      return 'error'
    } finally {
      clearInterval(renew)
    }
  }

  /**
   * The entry a job had taken when its node stopped: gone means replayed and accepted
   * (or deleted meanwhile); a record rewritten since it was taken means refused again;
   * otherwise its replay never happened, and happens now.
   */
  async #finishInFlight (jobId: string, inFlight: { readonly id: string, readonly at: number }): Promise<Outcome | undefined> {
    const entry = await this.#options.source.deadLetters.get(inFlight.id)
    if (entry === undefined) return 'gone'
    if (Date.parse(entry.record.time) >= inFlight.at) return 'refused'
    return await this.#replay(jobId, inFlight.id)
  }

  /** The ids of the matching entries, oldest first, at most `limit`, and a sample of them. */
  async #matching (request: RedriveRequest): Promise<{ ids: string[], sample: RedrivePreview['sample'] }> {
    const newestFirst: Array<{ id: string, record: DeadLetterRecord }> = []
    const seen = new Set<string>()
    let cursor: string | undefined
    do {
      const page = await this.#options.source.deadLetters.list({ limit: SCAN_PAGE, ...(cursor === undefined ? {} : { cursor }) })
      for (const entry of page.items) {
        // a cursor deleted meanwhile starts the listing over: each entry counts once
        if (seen.has(entry.id)) continue
        seen.add(entry.id)
        if (request.matches(entry)) newestFirst.push({ id: entry.id, record: entry.record })
      }
      cursor = page.next
    } while (cursor !== undefined)
    const oldestFirst = newestFirst.reverse().slice(0, request.limit)
    return { ids: oldestFirst.map((e) => e.id), sample: oldestFirst.slice(0, SAMPLE_SIZE) }
  }

  #line (kind: 'start' | 'end', fields: Record<string, unknown>, msg: string): void {
    const suppressed = this.#sampler.take(kind)
    if (suppressed !== undefined) this.#options.log.info({ ...fields, ...(suppressed > 0 ? { suppressed } : {}) }, msg)
  }
}
