// aedes-persistence-redis ships no types. Its default export has the same
// callback/promise surface as aedes-persistence's memory store, so reuse that.
declare module 'aedes-persistence-redis' {
  import type { AedesMemoryPersistence } from 'aedes-persistence'
  import type { Redis } from 'ioredis'

  interface RedisPersistenceOptions {
    /** An ioredis connection to use instead of one built from the other options. */
    conn?: Redis
    /** Max QoS 1/2 messages kept per offline session. Default 1000. */
    maxSessionDelivery?: number
  }

  export default function aedesPersistenceRedis (options?: RedisPersistenceOptions): AedesMemoryPersistence
}
