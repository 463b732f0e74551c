import type { Redis } from 'ioredis'
import type { RedriveFilter } from './redrive-filter.js'
import { BUSY, claimProblem, type RedriveJob, type RedriveJobStore, type RedriveState, type RedriveStep, type Settled } from './redrive-jobs.js'

/** Ids pushed per command while a job's entries are written. */
const PUSH_BATCH = 500

/**
 * Install a new job unless a live one runs. KEYS: job hash, new pending list.
 * ARGV: now, leaseMs, then the job's fields as name/value pairs.
 * Returns the running job's id, or '' when the new job was installed.
 */
const CREATE = `
local state = redis.call('HGET', KEYS[1], 'state')
local heartbeat = tonumber(redis.call('HGET', KEYS[1], 'heartbeat') or '0')
if state == 'running' and tonumber(ARGV[1]) - heartbeat < tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[2])
  return redis.call('HGET', KEYS[1], 'id')
end
local old = redis.call('HGET', KEYS[1], 'id')
if old then redis.call('DEL', KEYS[1] .. ':' .. old .. ':pending') end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
return ''
`

/**
 * Make a node run the job if it may. KEYS: job hash. ARGV: id, node, now, leaseMs.
 * Returns '' when claimed, 'busy' while the last node finishes the entry in hand, else
 * the job's state ('missing' when unknown).
 */
const CLAIM = `
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return 'missing' end
local state = redis.call('HGET', KEYS[1], 'state')
local heartbeat = tonumber(redis.call('HGET', KEYS[1], 'heartbeat') or '0')
local alive = tonumber(ARGV[3]) - heartbeat < tonumber(ARGV[4])
if state == 'done' or (state == 'running' and alive) then return state end
if alive and redis.call('HEXISTS', KEYS[1], 'inFlight') == 1 then return 'busy' end
redis.call('HSET', KEYS[1], 'state', 'running', 'node', ARGV[2], 'heartbeat', ARGV[3])
redis.call('HDEL', KEYS[1], 'endedAt')
return ''
`

/** KEYS: job hash. ARGV: id, entry id, node, at. Marks the entry in hand while the job runs on that node. */
const BEGIN = `
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'state') ~= 'running' or redis.call('HGET', KEYS[1], 'node') ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], 'inFlight', ARGV[2], 'inFlightAt', ARGV[4])
return 1
`

/** KEYS: job hash, pending list. ARGV: id, entry id, counter. Only for the entry in hand of the job in the slot. */
const SETTLE = `
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'inFlight') ~= ARGV[2] then return 0 end
redis.call('LREM', KEYS[2], 1, ARGV[2])
redis.call('HINCRBY', KEYS[1], ARGV[3], 1)
redis.call('HDEL', KEYS[1], 'inFlight', 'inFlightAt')
return 1
`

/**
 * The redrive job of a cluster, so that any node shows it, stops it or continues it:
 * a hash (`<prefix>`) with the job's fields, its lease and the entry in flight, and a
 * list (`<prefix>:<jobId>:pending`) of the ids still to replay, oldest first.
 */
export class RedisRedriveJobStore implements RedriveJobStore {
  readonly #key: string

  constructor (private readonly redis: Redis, private readonly leaseMs: number, prefix = 'ce-broker:dlq:replay') {
    this.#key = prefix
  }

  async get (id: string): Promise<RedriveJob | undefined> {
    return (await this.#read(id))?.job
  }

  async create (job: RedriveJob, ids: readonly string[], now: number): Promise<RedriveJob | undefined> {
    const pending = this.#pending(job.id)
    for (let i = 0; i < ids.length; i += PUSH_BATCH) await this.redis.rpush(pending, ...ids.slice(i, i + PUSH_BATCH))
    const fields = { ...fieldsOf(job), heartbeat: String(now) }
    const running = await this.redis.eval(CREATE, 2, this.#key, pending, now, this.leaseMs, ...Object.entries(fields).flat())
    return typeof running === 'string' && running !== '' ? await this.get(running) : undefined
  }

  async claim (id: string, node: string, now: number): Promise<RedriveJob | string> {
    const answer = await this.redis.eval(CLAIM, 1, this.#key, id, node, now, this.leaseMs)
    if (answer === '') return (await this.get(id)) ?? `no redrive job ${JSON.stringify(id)}`
    if (answer === BUSY) return BUSY
    const job = await this.get(id)
    if (job === undefined) return `no redrive job ${JSON.stringify(id)}`
    return claimProblem(job, node, true) ?? `redrive job ${id} cannot be resumed now`
  }

  async step (id: string, node: string, now: number): Promise<RedriveStep | undefined> {
    const read = await this.#read(id)
    if (read === undefined || read.job.state !== 'running' || read.job.node !== node) return undefined
    await this.redis.hset(this.#key, 'heartbeat', String(now))
    const next = await this.redis.lindex(this.#pending(id), 0)
    return { job: read.job, next: next ?? undefined, ...(read.inFlight === undefined ? {} : { inFlight: read.inFlight }) }
  }

  async begin (id: string, entryId: string, node: string, at: number): Promise<boolean> {
    return await this.redis.eval(BEGIN, 1, this.#key, id, entryId, node, at) === 1
  }

  async settle (id: string, entryId: string, outcome: Settled): Promise<void> {
    await this.redis.eval(SETTLE, 2, this.#key, this.#pending(id), id, entryId, outcome)
  }

  async end (id: string, state: 'stopped' | 'done', at: string): Promise<RedriveJob | undefined> {
    if (await this.redis.hget(this.#key, 'id') !== id) return undefined
    await this.redis.hset(this.#key, 'state', state, 'endedAt', at)
    return await this.get(id)
  }

  #pending (id: string): string {
    return `${this.#key}:${id}:pending`
  }

  async #read (id: string): Promise<{ job: RedriveJob, inFlight: { id: string, at: number } | undefined } | undefined> {
    const [hash, remaining] = await Promise.all([this.redis.hgetall(this.#key), this.redis.llen(this.#pending(id))])
    if (hash.id !== id) return undefined
    const job: RedriveJob = {
      id,
      state: stateOf(hash.state),
      // written by create() from a checked filter
      filter: JSON.parse(hash.filter ?? '{}') as RedriveFilter,
      matched: Number(hash.matched ?? 0),
      replayed: Number(hash.replayed ?? 0),
      failed: Number(hash.failed ?? 0),
      skipped: Number(hash.skipped ?? 0),
      remaining,
      startedAt: hash.startedAt ?? '',
      ...(hash.endedAt === undefined ? {} : { endedAt: hash.endedAt }),
      node: hash.node ?? ''
    }
    const inFlight = hash.inFlight === undefined ? undefined : { id: hash.inFlight, at: Number(hash.inFlightAt ?? 0) }
    return { job, inFlight }
  }
}

function fieldsOf (job: RedriveJob): Record<string, string> {
  return {
    id: job.id,
    state: job.state,
    filter: JSON.stringify(job.filter),
    matched: String(job.matched),
    replayed: String(job.replayed),
    failed: String(job.failed),
    skipped: String(job.skipped),
    startedAt: job.startedAt,
    node: job.node
  }
}

function stateOf (value: string | undefined): RedriveState {
  return value === 'running' || value === 'stopped' ? value : 'done'
}
