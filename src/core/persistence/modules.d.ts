// aedes-persistence-redis ships no types. Its default export has the same
// callback/promise surface as aedes-persistence's memory store, so reuse that.
declare module 'aedes-persistence-redis' {
  import type { AedesMemoryPersistence } from 'aedes-persistence'
  import type { Redis } from 'ioredis'

  interface RedisPersistenceOptions {
    /** An ioredis connection to use instead of one built from the other options. */
    conn?: Redis
    /**
     * Not a limit on what a session keeps: how far its `outgoingStream` reads a session's
     * queue on CONNECT (this + 1 messages; default 1000). ce-broker replaces that stream
     * with one that reads the whole queue (redis-backlog.ts), so it has no effect there.
     */
    maxSessionDelivery?: number
  }

  export default function aedesPersistenceRedis (options?: RedisPersistenceOptions): AedesMemoryPersistence
}

// qlobber 8 ships no types: the part of its dedup matcher the cluster route table uses.
declare module 'qlobber' {
  interface QlobberOptions {
    separator?: string
    wildcard_one?: string
    wildcard_some?: string
    match_empty_levels?: boolean
  }

  export class QlobberDedup {
    constructor (options?: QlobberOptions)
    add (topic: string, value: string): this
    remove (topic: string, value?: string): this
    match (topic: string): Set<string>
    clear (): this
  }
}
