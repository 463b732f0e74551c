import type { RedriveFilter } from './redrive-filter.js'

/** `running` until every entry had its turn (`done`) or someone stopped it (`stopped`, resumable). */
export type RedriveState = 'running' | 'stopped' | 'done'

/** A bulk redrive as `GET /api/dlq/replay/:jobId` shows it. */
export interface RedriveJob {
  readonly id: string
  readonly state: RedriveState
  readonly filter: RedriveFilter
  /** Entries that matched when the job started (after `limit`). */
  readonly matched: number
  /** Accepted again, or queued again for their webhook subscription. */
  readonly replayed: number
  /** Refused again (kept with the new reason), or their subscription is gone or disabled (kept as they were). */
  readonly failed: number
  /** Gone from the store before their turn (deleted, evicted, replayed one by one). */
  readonly skipped: number
  /** Entries not replayed yet. */
  readonly remaining: number
  readonly startedAt: string
  readonly endedAt?: string
  /** The node running it, or that ran it last. */
  readonly node: string
}

/** What to do next: the entry whose turn it is, and one taken but never settled (its node stopped in the middle). */
export interface RedriveStep {
  readonly job: RedriveJob
  readonly next: string | undefined
  readonly inFlight?: { readonly id: string, readonly at: number }
}

export type Settled = 'replayed' | 'failed' | 'skipped'

/** What `claim` answers while a stopped job's node still replays the entry in hand. */
export const BUSY = 'busy'

/**
 * Where the redrive job and its position are kept: one job at a time (the running one,
 * or the last one), with the ids of the entries it has not replayed yet, oldest first.
 * A job is alive while its node renews its lease (`step`); a job whose lease ran out
 * may be claimed by another node. Memory embedded, Redis in a cluster.
 */
export interface RedriveJobStore {
  get: (id: string) => Promise<RedriveJob | undefined>
  /** Start `job` with its entries unless a live job runs: then that job, and nothing changes. */
  create: (job: RedriveJob, ids: readonly string[], now: number) => Promise<RedriveJob | undefined>
  /**
   * Make `node` run the job: the job, or why not (unknown, done, alive on another node),
   * or `BUSY` while the node that ran it still finishes the entry in hand after a stop.
   */
  claim: (id: string, node: string, now: number) => Promise<RedriveJob | string>
  /** Renew the lease and read the next turn; `undefined` when the job no longer runs on `node`. */
  step: (id: string, node: string, now: number) => Promise<RedriveStep | undefined>
  /** Mark `entryId` taken before it is replayed, if the job still runs on `node`: whether it does. */
  begin: (id: string, entryId: string, node: string, at: number) => Promise<boolean>
  /** `entryId`, the entry in hand, had its turn: it leaves the job's entries, counted as `outcome`; nothing when it is not in hand. */
  settle: (id: string, entryId: string, outcome: Settled) => Promise<void>
  /** Set the state (`stopped` or `done`) and the end time; the job as it is then. */
  end: (id: string, state: 'stopped' | 'done', at: string) => Promise<RedriveJob | undefined>
}

interface MemoryJob {
  job: RedriveJob
  pending: string[]
  heartbeat: number
  inFlight: { id: string, at: number } | undefined
}

/** The redrive job of an embedded broker. */
export class MemoryRedriveJobStore implements RedriveJobStore {
  #current: MemoryJob | undefined

  constructor (private readonly leaseMs: number) {}

  async get (id: string): Promise<RedriveJob | undefined> {
    return this.#of(id)?.job
  }

  async create (job: RedriveJob, ids: readonly string[], now: number): Promise<RedriveJob | undefined> {
    const current = this.#current
    if (current !== undefined && current.job.state === 'running' && now - current.heartbeat < this.leaseMs) return current.job
    this.#current = { job: { ...job, remaining: ids.length }, pending: [...ids], heartbeat: now, inFlight: undefined }
    return undefined
  }

  async claim (id: string, node: string, now: number): Promise<RedriveJob | string> {
    const current = this.#of(id)
    if (current === undefined) return `no redrive job ${JSON.stringify(id)}`
    const alive = now - current.heartbeat < this.leaseMs
    const problem = claimProblem(current.job, node, alive)
    if (problem !== undefined) return problem
    if (alive && current.inFlight !== undefined) return BUSY
    const { endedAt: _ended, ...rest } = current.job
    current.job = { ...rest, state: 'running', node }
    current.heartbeat = now
    return current.job
  }

  async step (id: string, node: string, now: number): Promise<RedriveStep | undefined> {
    const current = this.#of(id)
    if (current === undefined || current.job.state !== 'running' || current.job.node !== node) return undefined
    current.heartbeat = now
    return { job: current.job, next: current.pending[0], ...(current.inFlight === undefined ? {} : { inFlight: current.inFlight }) }
  }

  async begin (id: string, entryId: string, node: string, at: number): Promise<boolean> {
    const current = this.#of(id)
    if (current === undefined || current.job.state !== 'running' || current.job.node !== node) return false
    current.inFlight = { id: entryId, at }
    return true
  }

  async settle (id: string, entryId: string, outcome: Settled): Promise<void> {
    const current = this.#of(id)
    if (current === undefined || current.inFlight?.id !== entryId) return
    const at = current.pending.indexOf(entryId)
    if (at !== -1) current.pending.splice(at, 1)
    current.inFlight = undefined
    current.job = { ...current.job, [outcome]: current.job[outcome] + 1, remaining: current.pending.length }
  }

  async end (id: string, state: 'stopped' | 'done', at: string): Promise<RedriveJob | undefined> {
    const current = this.#of(id)
    if (current === undefined) return undefined
    current.job = { ...current.job, state, endedAt: at }
    return current.job
  }

  #of (id: string): MemoryJob | undefined {
    return this.#current?.job.id === id ? this.#current : undefined
  }
}

/** Why `node` may not run `job` now, or `undefined` when it may. */
export function claimProblem (job: RedriveJob, node: string, alive: boolean): string | undefined {
  if (job.state === 'done') return `redrive job ${job.id} is done`
  if (job.state === 'running' && alive) return `redrive job ${job.id} is running on node ${job.node}`
  return undefined
}
