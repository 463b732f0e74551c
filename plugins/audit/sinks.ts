import { createWriteStream, type WriteStream } from 'node:fs'
import { open } from 'node:fs/promises'
import type { Redis } from 'ioredis'
import type { RecordBatch } from './record.js'

/** Where audit lines go besides `$audit/...`: written in batches, one per event-loop turn, never awaited by a publish. */
export interface AuditSink {
  readonly name: 'file' | 'stream'
  /** Write a batch of records; resolves to how many were written. */
  write: (batch: RecordBatch) => Promise<number> | number
  close: () => Promise<void>
}

/** Past this many bytes queued in the file stream (a disk slower than the broker), batches are dropped and counted. */
const MAX_FILE_BACKLOG_BYTES = 64 * 1024 * 1024

/**
 * Appends to a JSON-lines file. The file is opened at start-up, so a path that cannot
 * be written stops start-up with its name; later write errors are reported and counted.
 */
export async function fileSink (path: string, onError: (err: unknown) => void): Promise<AuditSink> {
  // the stream takes the handle over, and closes it when it ends
  const stream: WriteStream = createWriteStream('', { fd: await open(path, 'a') })
  let failed = false
  stream.on('error', (err) => {
    failed = true
    onError(err)
  })
  return {
    name: 'file',
    write (batch) {
      if (failed || stream.writableLength > MAX_FILE_BACKLOG_BYTES) return 0
      // the chunks are whole lines already: written as they are, no copy
      for (const chunk of batch.chunks) stream.write(chunk)
      return batch.count
    },
    async close () {
      if (failed) return
      await new Promise<void>((resolve) => { stream.end(resolve) })
    }
  }
}

/** Past this many records waiting on Redis (a Redis slower than the broker), batches are dropped and counted. */
const MAX_STREAM_BACKLOG = 100_000

/**
 * Adds each line of `ARGV[2..]` (chunks of JSON lines, each ending in a line break) to
 * the stream, trimmed to about `ARGV[1]` entries; returns how many it added. The node
 * hands over its slabs as they are: the splitting is Redis' (a line holds no raw line
 * break, JSON escapes them), where a command per record cost the event loop more than
 * everything else the audit does.
 */
const APPEND_LINES = `
local added = 0
for i = 2, #ARGV do
  local chunk = ARGV[i]
  local from = 1
  while true do
    local stop = string.find(chunk, '\\n', from, true)
    if stop == nil then break end
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'record', string.sub(chunk, from, stop - 1))
    added = added + 1
    from = stop + 1
  end
end
return added`

/**
 * Adds to a Redis stream, trimmed to about `maxLen` entries (`XADD key MAXLEN ~ n * record <json>`),
 * one script call per batch. A batch written while this connection is (re)connecting
 * waits for it up to `readyWaitMs` (`redis.outageHoldMs`): the events of that batch
 * were acknowledged through another connection that is back already.
 */
export function streamSink (redis: Redis, key: string, maxLen: number, readyWaitMs: number): AuditSink {
  let waiting = 0
  return {
    name: 'stream',
    async write (batch) {
      // while Redis is away or behind, the batch is dropped and counted, not queued without bound
      if (waiting > MAX_STREAM_BACKLOG) return 0
      waiting += batch.count
      try {
        if (!await ready(redis, readyWaitMs)) return 0
        // EVAL, not EVALSHA: a few hundred bytes per call, and no script cache to miss after a Redis restart
        const added = await Promise.all(piecesOf(batch.chunks).map(async (piece) => Number(await redis.eval(APPEND_LINES, 1, key, maxLen, piece))))
        return added.reduce((a, b) => a + b, 0)
      } finally {
        waiting -= batch.count
      }
    },
    async close () {}
  }
}

/** Whether `redis` is ready, or becomes so within `ms` (never when it was closed for good). */
async function ready (redis: Redis, ms: number): Promise<boolean> {
  if (redis.status === 'ready') return true
  if (redis.status === 'end' || ms === 0) return false
  return await new Promise<boolean>((resolve) => {
    const done = (value: boolean): void => {
      clearTimeout(timer)
      redis.off('ready', onReady)
      redis.off('end', onEnd)
      resolve(value)
    }
    const onReady = (): void => { done(true) }
    const onEnd = (): void => { done(false) }
    const timer = setTimeout(() => { done(false) }, ms)
    redis.on('ready', onReady)
    redis.on('end', onEnd)
  })
}

/** Bytes of lines one script call adds at most: Redis runs nothing else while a script runs, the cluster's commits included. */
const PIECE_BYTES = 32 * 1024

/** The chunks cut at line breaks into pieces of about `PIECE_BYTES` (views, no copy). */
function piecesOf (chunks: readonly Buffer[]): Buffer[] {
  const pieces: Buffer[] = []
  for (const chunk of chunks) {
    let from = 0
    while (from < chunk.length) {
      const cut = from + PIECE_BYTES >= chunk.length ? chunk.length : chunk.indexOf(0x0a, from + PIECE_BYTES) + 1
      const end = cut <= 0 ? chunk.length : cut
      pieces.push(chunk.subarray(from, end))
      from = end
    }
  }
  return pieces
}
