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

/** Adds to a Redis stream, trimmed to about `maxLen` entries (`XADD key MAXLEN ~ n * record <json>`), one pipeline per batch. */
export function streamSink (redis: Redis, key: string, maxLen: number): AuditSink {
  let waiting = 0
  return {
    name: 'stream',
    async write (batch) {
      // while Redis is away or behind, the batch is dropped and counted, not queued without bound
      if (redis.status !== 'ready' || waiting > MAX_STREAM_BACKLOG) return 0
      const pipeline = redis.pipeline()
      for (const line of linesOf(batch)) pipeline.xadd(key, 'MAXLEN', '~', maxLen, '*', 'record', line)
      waiting += batch.count
      try {
        const results = await pipeline.exec()
        return (results ?? []).filter(([err]) => err === null).length
      } finally {
        waiting -= batch.count
      }
    },
    async close () {}
  }
}

/** Each record of a batch, without its line break. A record holds none of its own: JSON escapes them. */
function * linesOf (batch: RecordBatch): Generator<Buffer> {
  for (const chunk of batch.chunks) {
    let from = 0
    for (let end = chunk.indexOf(0x0a); end !== -1; end = chunk.indexOf(0x0a, from)) {
      yield chunk.subarray(from, end)
      from = end + 1
    }
  }
}
