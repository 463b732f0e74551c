import { randomUUID } from 'node:crypto'
import { createRequire } from 'node:module'
import { Readable } from 'node:stream'
import type { AedesMemoryPersistence } from 'aedes-persistence'
import type { Redis } from 'ioredis'

/**
 * Queued messages read from Redis at a time while a session's backlog is sent: one
 * LRANGE of keys, then one MGET of their packets. 100 keeps what one resuming
 * session holds small (100 packets: a few KB for typical events, at most 25 MiB at
 * the default 256 KiB payload limit; `Readable.from` reads 16 more ahead) and costs
 * 2 round trips per 100 messages, where the library's own stream made one per message.
 */
export const BACKLOG_PAGE = 100

/**
 * How long a backlog snapshot outlives its last page read. It is deleted when the
 * backlog is sent or the connection ends; this only covers a node killed meanwhile.
 * A client that takes longer than this over one page gets the rest on its next CONNECT.
 */
const SNAPSHOT_TTL_MS = 10 * 60_000

/**
 * aedes-persistence-redis keeps a session's queue as a list `outgoing:<clientId>` of
 * packet keys (`packet:<brokerId>:<counter>`, or `outgoing:<clientId>:<brokerId>:<counter>`
 * for a QoS 2 message waiting for PUBCOMP), each packet msgpack-encoded under its key.
 * Acks remove keys anywhere in the list (LREM), new messages are appended, so reading it
 * by offset while the backlog is acked would skip messages. This script takes, in one
 * step, the first page and, for a longer queue, a copy of the whole key list (keys only,
 * a few dozen bytes each, in Redis) that the later pages are read from.
 * (Both keys in one script: ce-broker talks to one Redis, not a Redis Cluster.)
 * KEYS: the session's list, the snapshot. ARGV: page size, snapshot TTL (ms).
 * Returns [length of the queue, first page of keys].
 */
const SNAPSHOT_SCRIPT = `
local n = redis.call('LLEN', KEYS[1])
local page = tonumber(ARGV[1])
if n > page then
  for i = 0, n - 1, page do
    redis.call('RPUSH', KEYS[2], unpack(redis.call('LRANGE', KEYS[1], i, i + page - 1)))
  end
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return { n, redis.call('LRANGE', KEYS[1], 0, page - 1) }
`

/** The msgpack codec aedes-persistence-redis stores packets with, loaded from where the library loads it. */
interface Codec {
  readonly decode: (encoded: Buffer) => unknown
}

function libraryCodec (): Codec {
  const library = createRequire(import.meta.url).resolve('aedes-persistence-redis')
  const codec: unknown = createRequire(library)('msgpack-lite')
  const decode: unknown = typeof codec === 'object' && codec !== null ? Reflect.get(codec, 'decode') : undefined
  if (typeof decode !== 'function') throw new TypeError('msgpack-lite, next to aedes-persistence-redis, has no decode(): review redis-backlog.ts')
  return { decode: (encoded) => Reflect.apply(decode, codec, [encoded]) }
}

/**
 * Replace aedes-persistence-redis' `outgoingStream`, which aedes reads a persistent
 * session's queue from on CONNECT. The library's reads the first `maxSessionDelivery`
 * + 1 keys (1 001) and stops; this one sends the whole queue, in its order, one
 * page at a time. The storage format stays the library's.
 */
export function pageRedisBacklog (persistence: AedesMemoryPersistence, db: Redis): void {
  const codec = libraryCodec()
  persistence.outgoingStream = function pagedOutgoingStream (client) {
    return Readable.from(readBacklog(db, codec, client.id, BACKLOG_PAGE))
  }
}

/** The session list key, as aedes-persistence-redis builds it. */
function outgoingListKey (clientId: string): string {
  return `outgoing:${encodeURIComponent(clientId)}`
}

/**
 * The packets queued for `clientId` when it is called, in queue order, `pageSize` at a
 * time. A key whose packet is gone (expired) is dropped from the queue, as the library does.
 */
async function * readBacklog (db: Redis, codec: Codec, clientId: string, pageSize: number): AsyncGenerator<object> {
  const listKey = outgoingListKey(clientId)
  const snapshotKey = `outgoing-backlog:${encodeURIComponent(clientId)}:${randomUUID()}`
  const [total, first] = snapshotReply(await db.eval(SNAPSHOT_SCRIPT, 2, listKey, snapshotKey, pageSize, SNAPSHOT_TTL_MS))
  try {
    let keys = first
    for (let offset = 0; keys.length > 0;) {
      const packets = await db.mgetBuffer(...keys)
      for (const [i, key] of keys.entries()) {
        const encoded = packets[i]
        const packet: unknown = encoded === null || encoded === undefined ? undefined : codec.decode(encoded)
        if (typeof packet === 'object' && packet !== null) yield freshId(packet)
        else await db.lrem(listKey, 0, key)
      }
      offset += keys.length
      if (offset >= total) break
      keys = await nextPage(db, snapshotKey, offset, pageSize)
    }
  } finally {
    if (total > pageSize) await db.del(snapshotKey).catch(() => { /* it expires by itself */ })
  }
}

/**
 * A QoS 1 PUBLISH without the packet id it was stored with, so that aedes gives it the
 * connection's next free one. The stored id is not this connection's: the library keeps
 * one copy of a message for all its subscribers, carrying the id of whichever connection
 * was last sent it, maybe on a node that is gone. Sent again with it, two messages in
 * flight can share an id; the ack of one then clears the other (the library finds the
 * message by id), which stays queued though acked and comes again on the next CONNECT.
 * QoS 1 is at-least-once, so a new id on a re-send costs nothing. QoS 2 PUBLISHes and
 * PUBRELs keep theirs: a QoS 2 receiver recognises a re-sent message by its id.
 */
function freshId (packet: object): object {
  if (Reflect.get(packet, 'cmd') === 'publish' && Reflect.get(packet, 'qos') === 1) Reflect.deleteProperty(packet, 'messageId')
  return packet
}

/** Keys `offset` … `offset + pageSize - 1` of the snapshot, which lives `SNAPSHOT_TTL_MS` longer. */
async function nextPage (db: Redis, snapshotKey: string, offset: number, pageSize: number): Promise<string[]> {
  const [read] = await db.multi().lrange(snapshotKey, offset, offset + pageSize - 1).pexpire(snapshotKey, SNAPSHOT_TTL_MS).exec() ?? []
  if (read === undefined) return []
  const [err, keys] = read
  if (err !== null) throw err
  return stringList(keys)
}

function snapshotReply (reply: unknown): [number, string[]] {
  if (!Array.isArray(reply) || typeof reply[0] !== 'number') throw new TypeError(`unexpected reply from the backlog snapshot script: ${JSON.stringify(reply)}`)
  return [reply[0], stringList(reply[1])]
}

function stringList (value: unknown): string[] {
  if (!Array.isArray(value)) throw new TypeError(`expected a list of keys from Redis, got ${typeof value}`)
  return value.map(String)
}
