import type { RedisOptions } from 'ioredis'

/** Where the broker's Redis is: a URL ioredis reads itself, or the options of a Sentinel-watched master. */
export type RedisTarget =
  | { readonly kind: 'url', readonly url: string }
  | { readonly kind: 'sentinel', readonly options: RedisOptions }

const SENTINEL_URL = /^redis\+sentinel:\/\/(?:([^@/]*)@)?([^/?#]+)\/([^/?#]+)(?:\/(\d+))?\/?(?:\?([^#]*))?$/

/**
 * Read `redis.url`. `redis://` and `rediss://` go to ioredis as they are (it reads the
 * password, the db and TLS from them). `redis+sentinel://[user:pass@]host:port[,host:port…]/<master>[/<db>]`
 * names the Sentinels to ask and the master they watch: ioredis asks them where the
 * master is, reconnects to the new one after a failover (`failoverDetector` hears
 * `+switch-master` at once) and never writes to a replica. The user and password are
 * the master's; `?sentinelPassword=` is the Sentinels' own, when they require one.
 * Throws a plain `Error` naming what is wrong; the caller says which key it was.
 */
export function redisTarget (url: string): RedisTarget {
  if (!url.startsWith('redis+sentinel://')) return { kind: 'url', url }
  const match = SENTINEL_URL.exec(url)
  if (match === null) throw new Error('must be redis+sentinel://[user:pass@]host:port[,host:port…]/<master name>[/<db>]')
  const [, auth, hosts = '', name = '', db, query] = match
  const sentinels = hosts.split(',').map((hostPort) => {
    const at = hostPort.lastIndexOf(':')
    const host = at === -1 ? hostPort : hostPort.slice(0, at)
    const port = at === -1 ? 26379 : Number(hostPort.slice(at + 1))
    if (host === '' || !Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`has a Sentinel address that is not host:port: ${JSON.stringify(hostPort)}`)
    return { host: host.replace(/^\[(.*)\]$/, '$1'), port }
  })
  const [user, password] = auth === undefined ? [] : auth.split(':', 2).map(decodeURIComponent)
  const sentinelPassword = new URLSearchParams(query ?? '').get('sentinelPassword') ?? undefined
  return {
    kind: 'sentinel',
    options: {
      sentinels,
      name: decodeURIComponent(name),
      failoverDetector: true,
      ...(user === undefined || user === '' ? {} : { username: user }),
      ...(password === undefined ? {} : { password }),
      ...(db === undefined ? {} : { db: Number(db) }),
      ...(sentinelPassword === undefined ? {} : { sentinelPassword })
    }
  }
}
