import type { Redis } from 'ioredis'
import { LRUCache } from 'lru-cache'

/** Where a handler stands with one event: run it now, it ran already, or another run holds it. */
export type Claim = 'run' | 'done' | 'running'

/**
 * Which events a webhook handler has processed, so that a redelivered event (the broker
 * delivers at least once) runs its handler once.
 */
export interface ProcessedStore {
  /** Take `key` for one run. */
  begin: (key: string) => Promise<Claim>
  /** The run succeeded: a later delivery of the same event is answered without running. */
  finish: (key: string) => Promise<void>
  /** The run failed: the next delivery runs it again. */
  abandon: (key: string) => Promise<void>
}

export interface ProcessedStoreOptions {
  /** How long a processed event is remembered, in ms (default 24 h, the broker's idempotency window). */
  readonly ttlMs?: number
  /** How long a run holds its event before another delivery may run it (a handler that died), in ms (default 5 min). */
  readonly runningTtlMs?: number
}

const DAY_MS = 24 * 60 * 60 * 1000
const RUNNING_TTL_MS = 5 * 60 * 1000

/** In this process, at most `max` events (default 100 000), the least recently seen forgotten first. */
export function memoryProcessedStore (options: ProcessedStoreOptions & { readonly max?: number } = {}): ProcessedStore {
  const ttl = options.ttlMs ?? DAY_MS
  const runningTtl = options.runningTtlMs ?? RUNNING_TTL_MS
  const seen = new LRUCache<string, 'running' | 'done'>({ max: options.max ?? 100_000, ttl, ttlAutopurge: false })
  return {
    begin: async (key) => {
      const state = seen.get(key)
      if (state !== undefined) return state
      seen.set(key, 'running', { ttl: runningTtl })
      return 'run'
    },
    finish: async (key) => { seen.set(key, 'done') },
    abandon: async (key) => { seen.delete(key) }
  }
}

/** In Redis, shared by every replica of the receiving service: `SET NX` takes an event for one run. */
export function redisProcessedStore (redis: Redis, options: ProcessedStoreOptions & { readonly prefix?: string } = {}): ProcessedStore {
  const prefix = options.prefix ?? 'ce-broker:processed:'
  const ttl = options.ttlMs ?? DAY_MS
  const runningTtl = options.runningTtlMs ?? RUNNING_TTL_MS
  return {
    begin: async (key) => {
      for (let tries = 0; tries < 3; tries++) {
        if (await redis.set(prefix + key, 'running', 'PX', runningTtl, 'NX') === 'OK') return 'run'
        const state = await redis.get(prefix + key)
        if (state === 'done' || state === 'running') return state
        // it expired between the two commands: take it again
      }
      return 'running'
    },
    finish: async (key) => { await redis.set(prefix + key, 'done', 'PX', ttl) },
    abandon: async (key) => { await redis.del(prefix + key) }
  }
}
