import type { Redis } from 'ioredis'
import { LRUCache } from 'lru-cache'

/**
 * What authentication remembers between CONNECTs: failed logins per address and the
 * user each client id belongs to. In memory on one node; in Redis with `--redis`, so a
 * cluster counts an address's failures once and a client id keeps its owner on every
 * node (aedes takes a session over across nodes, so a per-node owner would let
 * another user take it through a second node).
 */
export interface AuthState {
  /** Failed logins from `address` in the current window. */
  failures: (address: string) => Promise<number>
  /** Count one more; the window starts at an address's first failure and is not extended by later ones. */
  fail: (address: string) => Promise<void>
  /** Give `clientId` to `username` unless another user holds it; false when one does. */
  claim: (clientId: string, username: string) => Promise<boolean>
}

/** Addresses whose failed logins are counted; beyond it the least recently failing are forgotten. */
const TRACKED_ADDRESSES = 10_000
/** Client ids whose owner (the user that last used them) is remembered. */
const TRACKED_CLIENT_IDS = 100_000

export class MemoryAuthState implements AuthState {
  readonly #failures: LRUCache<string, number>
  readonly #owners = new LRUCache<string, string>({ max: TRACKED_CLIENT_IDS })

  constructor (windowMs: number) {
    this.#failures = new LRUCache<string, number>({ max: TRACKED_ADDRESSES, ttl: windowMs })
  }

  async failures (address: string): Promise<number> {
    return this.#failures.get(address) ?? 0
  }

  async fail (address: string): Promise<void> {
    this.#failures.set(address, (this.#failures.get(address) ?? 0) + 1, { noUpdateTTL: this.#failures.has(address) })
  }

  async claim (clientId: string, username: string): Promise<boolean> {
    const owner = this.#owners.get(clientId)
    if (owner !== undefined && owner !== username) return false
    this.#owners.set(clientId, username)
    return true
  }
}

/** KEYS: the address's counter. ARGV: window in ms. The window starts with the first failure. */
const FAIL = `
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
`

/** KEYS: the client id's owner. ARGV: username, ttl in ms. 1 when the id is (now) the user's. */
const CLAIM = `
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`

/**
 * How long a client id's owner is remembered in Redis after its last CONNECT: keys
 * expire instead of an LRU bounding them, so random client ids do not pile up.
 */
export const OWNER_TTL_MS = 7 * 24 * 60 * 60 * 1000

export class RedisAuthState implements AuthState {
  constructor (private readonly redis: Redis, private readonly windowMs: number, private readonly prefix = 'ce-broker:auth') {}

  async failures (address: string): Promise<number> {
    return Number(await this.redis.get(`${this.prefix}:failures:${address}`) ?? 0)
  }

  async fail (address: string): Promise<void> {
    await this.redis.eval(FAIL, 1, `${this.prefix}:failures:${address}`, this.windowMs)
  }

  async claim (clientId: string, username: string): Promise<boolean> {
    return await this.redis.eval(CLAIM, 1, `${this.prefix}:owner:${clientId}`, username, OWNER_TTL_MS) === 1
  }
}
