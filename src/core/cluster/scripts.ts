import type { Redis } from 'ioredis'

/** Where the cluster keeps its routes, members and inboxes in Redis. */
export const CLUSTER_PREFIX = 'ce-broker:cluster:'
/** The pub/sub channel every node's route changes go out on. */
export const ROUTE_CHANNEL = `${CLUSTER_PREFIX}routes`
/** Sorted set of the live nodes, scored by their last heartbeat (Redis' clock, ms). */
export const NODES_KEY = `${CLUSTER_PREFIX}nodes`

export const routesKey = (node: string): string => `${CLUSTER_PREFIX}routes:${node}`
export const seqKey = (node: string): string => `${CLUSTER_PREFIX}seq:${node}`
export const inboxKey = (node: string): string => `${CLUSTER_PREFIX}inbox:${node}`
export const journalKey = (node: string): string => `${CLUSTER_PREFIX}journal:${node}`

/**
 * The cluster's Lua scripts, each one atomic step: a route change and its counter and
 * announcement never part, and a dead node's keys go with its membership. Keys are named
 * inside the scripts from the prefix, which one Redis serves; Redis Cluster would need
 * them declared and in one slot (see README, Running a cluster).
 */
const SCRIPTS = {
  /** KEYS: routes, seq. ARGV: op (+ or -), filter, node, channel. Returns the new counter, or 0 when nothing changed. */
  clusterRoute: {
    numberOfKeys: 2,
    lua: `
local changed
if ARGV[1] == '+' then changed = redis.call('SADD', KEYS[1], ARGV[2]) else changed = redis.call('SREM', KEYS[1], ARGV[2]) end
if changed == 0 then return 0 end
local seq = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[4], ARGV[3] .. ' ' .. seq .. ' ' .. ARGV[1] .. ' ' .. ARGV[2])
return seq`
  },
  /** KEYS: routes, seq. ARGV: node, channel, filters... Replaces the node's filters; returns the new counter. */
  clusterRoutesReset: {
    numberOfKeys: 2,
    lua: `
redis.call('DEL', KEYS[1])
for i = 3, #ARGV, 1000 do
  redis.call('SADD', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
local seq = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[2], ARGV[1] .. ' ' .. seq .. ' = ')
return seq`
  },
  /**
   * KEYS: nodes. ARGV: node, timeout (ms), prefix, channel. Marks the node alive on Redis'
   * clock and removes every node silent for longer than the timeout: its routes, counter
   * and inbox, announced; the events of its journal move to this node's journal, to be
   * finished here. Returns { 1 when the node was not a member (new, or reaped), the first
   * and last id of the entries moved in, or '' }.
   */
  clusterHeartbeat: {
    numberOfKeys: 1,
    lua: `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local fresh = redis.call('ZADD', KEYS[1], now, ARGV[1])
local mine = ARGV[3] .. 'journal:' .. ARGV[1]
local first, last = '', ''
for _, node in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))) do
  redis.call('ZREM', KEYS[1], node)
  redis.call('DEL', ARGV[3] .. 'routes:' .. node, ARGV[3] .. 'seq:' .. node, ARGV[3] .. 'inbox:' .. node)
  local theirs = ARGV[3] .. 'journal:' .. node
  for _, entry in ipairs(redis.call('XRANGE', theirs, '-', '+')) do
    last = redis.call('XADD', mine, '*', unpack(entry[2]))
    if first == '' then first = last end
  end
  redis.call('DEL', theirs)
  redis.call('PUBLISH', ARGV[4], node .. ' 0 x ')
end
return { fresh, first, last }`
  },
  /** KEYS: nodes. ARGV: prefix. Every member's counter and filters, read at one instant. */
  clusterSnapshot: {
    numberOfKeys: 1,
    lua: `
local out = {}
for _, node in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local seq = redis.call('GET', ARGV[1] .. 'seq:' .. node) or '0'
  table.insert(out, { node, seq, redis.call('SMEMBERS', ARGV[1] .. 'routes:' .. node) })
end
return out`
  },
  /**
   * KEYS: nodes. ARGV: node, prefix. The node leaves: its membership, routes, counter and
   * inbox. A node whose journal still holds events stays a member: it is reaped when its
   * heartbeat stops, and the reaper finishes them (or it finishes them itself on restart).
   */
  clusterLeave: {
    numberOfKeys: 1,
    lua: `
if redis.call('XLEN', ARGV[2] .. 'journal:' .. ARGV[1]) > 0 then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', ARGV[2] .. 'routes:' .. ARGV[1], ARGV[2] .. 'seq:' .. ARGV[1], ARGV[2] .. 'inbox:' .. ARGV[1])
return 1`
  },
  /**
   * KEYS: journal. ARGV: five per event: claim key ('' for none), claim ttl (ms), topic
   * ('' for no entry), payload, meta (JSON: qos, retain, client id, event summary). For
   * each event in turn: a claim already taken makes it a duplicate (0); else the claim is
   * taken and the entry appended (its id), or 1 without an entry. The claim and the entry
   * become durable together: there is no claimed event without its entry for another
   * node to find.
   */
  journalCommit: {
    numberOfKeys: 1,
    lua: `
local out = {}
for i = 1, #ARGV, 5 do
  if ARGV[i] ~= '' and not redis.call('SET', ARGV[i], '1', 'PX', ARGV[i + 1], 'NX') then
    out[#out + 1] = 0
  elseif ARGV[i + 2] == '' then
    out[#out + 1] = 1
  else
    out[#out + 1] = redis.call('XADD', KEYS[1], '*', 't', ARGV[i + 2], 'p', ARGV[i + 3], 'm', ARGV[i + 4])
  end
end
return out`
  }
} as const

type ScriptName = keyof typeof SCRIPTS

/** A Redis connection with the cluster's scripts defined on it. */
export interface ClusterCommands {
  readonly route: (node: string, op: '+' | '-', filter: string) => Promise<number>
  readonly reset: (node: string, filters: readonly string[]) => Promise<number>
  /** Whether this node was not a member, and the range of journal entries taken over from reaped nodes. */
  readonly heartbeat: (node: string, timeoutMs: number) => Promise<{ readonly fresh: boolean, readonly taken: IdRange | undefined }>
  readonly snapshot: () => Promise<Array<{ readonly node: string, readonly seq: number, readonly filters: string[] }>>
  /** Whether the node left (it stays a member while its journal holds events). */
  readonly leave: (node: string) => Promise<boolean>
  /** One result per item, in order: 0 duplicate, 1 claimed (no entry), or the entry's id. */
  readonly commit: (node: string, items: ReadonlyArray<string | number | Buffer>) => Promise<Array<0 | 1 | string>>
}

/** The first and last id of a run of stream entries. */
export interface IdRange {
  readonly first: string
  readonly last: string
}

/** Define the scripts on `conn` (ioredis sends EVALSHA, and the script once when Redis lacks it). */
export function clusterCommands (conn: Redis): ClusterCommands {
  for (const [name, { numberOfKeys, lua }] of Object.entries(SCRIPTS)) conn.defineCommand(name, { numberOfKeys, lua })
  const call = async (name: ScriptName, ...args: Array<string | number | Buffer>): Promise<unknown> => {
    const command: unknown = Reflect.get(conn, name)
    if (typeof command !== 'function') throw new TypeError(`the Redis connection has no ${name} command`)
    const result: unknown = await Reflect.apply(command, conn, args)
    return result
  }
  return {
    route: async (node, op, filter) => Number(await call('clusterRoute', routesKey(node), seqKey(node), op, filter, node, ROUTE_CHANNEL)),
    reset: async (node, filters) => Number(await call('clusterRoutesReset', routesKey(node), seqKey(node), node, ROUTE_CHANNEL, ...filters)),
    heartbeat: async (node, timeoutMs) => {
      const reply = await call('clusterHeartbeat', NODES_KEY, node, timeoutMs, CLUSTER_PREFIX, ROUTE_CHANNEL)
      const [fresh, first, last]: unknown[] = Array.isArray(reply) ? reply : []
      const taken = typeof first === 'string' && typeof last === 'string' && first !== '' ? { first, last } : undefined
      return { fresh: Number(fresh) === 1, taken }
    },
    snapshot: async () => {
      const rows = await call('clusterSnapshot', NODES_KEY, CLUSTER_PREFIX)
      if (!Array.isArray(rows)) return []
      return rows.flatMap((row: unknown) => {
        if (!Array.isArray(row)) return []
        const [node, seq, filters]: unknown[] = row
        if (typeof node !== 'string' || !Array.isArray(filters)) return []
        return [{ node, seq: Number(seq), filters: filters.filter((f: unknown): f is string => typeof f === 'string') }]
      })
    },
    leave: async (node) => Number(await call('clusterLeave', NODES_KEY, node, CLUSTER_PREFIX)) === 1,
    commit: async (node, items) => {
      const reply = await call('journalCommit', journalKey(node), ...items)
      if (!Array.isArray(reply)) throw new TypeError('journalCommit answered no list')
      return reply.map((r: unknown) => (typeof r === 'string' ? r : Number(r) === 0 ? 0 : 1))
    }
  }
}
