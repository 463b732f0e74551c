import type { Redis } from 'ioredis'
import { newVersion, type Candidate, type Registered, type RegistryStore, type Vet } from './store.js'
import type { SchemaVersion, TypeConfig, TypeHistory } from './versions.js'

const PREFIX = 'ce-broker:schemas:'
/** Set of every type with versions or settings. */
const TYPES_KEY = `${PREFIX}types`
/** Hash: type → its settings (JSON). */
const CONFIG_KEY = `${PREFIX}config`
/** Every change is announced here with its type: the other nodes read that type again. */
export const SCHEMA_CHANGES_CHANNEL = `${PREFIX}changes`
const versionsKey = (type: string): string => `${PREFIX}versions:${type}`

/**
 * KEYS: versions, types. ARGV: the length the writer read, the new version (JSON), type, channel.
 * Appends only if nobody appended since the writer read the history it vetted against.
 */
const APPEND = `
if redis.call('LLEN', KEYS[1]) ~= tonumber(ARGV[1]) then return 0 end
local length = redis.call('RPUSH', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[3])
return length`

/** KEYS: config, types. ARGV: type, settings (JSON), channel. */
const CONFIGURE = `
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[3], ARGV[1])
return 1`

/** Attempts at appending while other nodes append to the same type. */
const MAX_RACES = 20

/**
 * The cluster's registry in Redis: a list of versions per type, a hash of settings, and a
 * channel that tells every node which type changed (it then reads that type's list again:
 * a versioned read, so a missed or repeated notice costs a read, never a version). A
 * version is appended by a script that checks nobody appended since the history was read
 * and vetted; a node that lost the race reads and vets again.
 */
export class RedisRegistryStore implements RegistryStore {
  readonly kind = 'redis'
  #subscriber: Redis | undefined

  constructor (private readonly redis: Redis) {}

  async load (): Promise<Map<string, TypeHistory>> {
    const types = await this.redis.smembers(TYPES_KEY)
    const out = new Map<string, TypeHistory>()
    for (const type of types.sort()) {
      const history = await this.read(type)
      if (history !== undefined) out.set(type, history)
    }
    return out
  }

  async read (type: string): Promise<TypeHistory | undefined> {
    const [versions, config] = await Promise.all([this.redis.lrange(versionsKey(type), 0, -1), this.redis.hget(CONFIG_KEY, type)])
    if (versions.length === 0 && config === null) return undefined
    return { versions: versions.map((text) => JSON.parse(text) as SchemaVersion), config: config === null ? {} : JSON.parse(config) as TypeConfig }
  }

  async register (type: string, candidate: Candidate, vet: Vet): Promise<Registered> {
    for (let race = 0; race < MAX_RACES; race++) {
      const history = await this.read(type) ?? { versions: [], config: {} }
      const same = history.versions.find((v) => v.fingerprint === candidate.fingerprint)
      if (same !== undefined) return { outcome: 'exists', version: same }
      const errors = vet(history)
      if (errors.length > 0) return { outcome: 'incompatible', errors }
      const version = newVersion(type, history.versions.length + 1, candidate)
      const appended = Number(await this.redis.eval(APPEND, 2, versionsKey(type), TYPES_KEY, history.versions.length, JSON.stringify(version), type, SCHEMA_CHANGES_CHANNEL))
      if (appended !== 0) return { outcome: 'created', version }
    }
    throw new Error(`type "${type}" changed ${MAX_RACES} times while a version was being registered: try again`)
  }

  async configure (type: string, config: TypeConfig): Promise<TypeHistory> {
    await this.redis.eval(CONFIGURE, 2, CONFIG_KEY, TYPES_KEY, type, JSON.stringify(config), SCHEMA_CHANGES_CHANNEL)
    return await this.read(type) ?? { versions: [], config }
  }

  /**
   * Follow the change channel on a connection of its own. After a reconnect every type is
   * read again (`undefined`): notices sent while the connection was down are not replayed.
   */
  async watch (changed: (type: string | undefined) => void): Promise<void> {
    const subscriber = this.redis.duplicate({ connectionName: `${this.redis.options.connectionName ?? 'ce-broker'}:schemas` })
    this.#subscriber = subscriber
    let connectedOnce = false
    subscriber.on('ready', () => {
      // ioredis subscribes again on 'ready': a PING answered after it means the channel is followed again
      if (connectedOnce) subscriber.ping().then(() => { changed(undefined) }, () => { /* the next 'ready' reads again */ })
      connectedOnce = true
    })
    subscriber.on('message', (channel: string, type: string) => {
      if (channel === SCHEMA_CHANGES_CHANNEL) changed(type)
    })
    subscriber.on('error', () => { /* ioredis reconnects; the broker's Redis health logs outages */ })
    await subscriber.subscribe(SCHEMA_CHANGES_CHANNEL)
  }

  async close (): Promise<void> {
    this.#subscriber?.disconnect()
  }
}
