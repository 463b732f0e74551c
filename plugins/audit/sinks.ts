import { createWriteStream, type WriteStream } from 'node:fs'
import { open } from 'node:fs/promises'
import type { Redis } from 'ioredis'

/** Where audit lines go besides `$audit/...`: written in batches, one per event-loop turn, never awaited by a publish. */
export interface AuditSink {
  readonly name: 'file' | 'stream'
  /** Write a batch of records (one JSON document each, no line break); resolves to how many were written. */
  write: (lines: readonly Buffer[]) => Promise<number> | number
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
    write (lines) {
      if (failed || stream.writableLength > MAX_FILE_BACKLOG_BYTES) return 0
      stream.write(joinLines(lines))
      return lines.length
    },
    async close () {
      if (failed) return
      await new Promise<void>((resolve) => { stream.end(resolve) })
    }
  }
}

/** The records as one chunk of JSON lines: one copy each, one write for the batch. */
function joinLines (lines: readonly Buffer[]): Buffer {
  let size = 0
  for (const line of lines) size += line.length + 1
  const out = Buffer.allocUnsafe(size)
  let at = 0
  for (const line of lines) {
    at += line.copy(out, at)
    out[at++] = 0x0a
  }
  return out
}

/** Past this many records waiting on Redis (a Redis slower than the broker), batches are dropped and counted. */
const MAX_STREAM_BACKLOG = 100_000

/** Adds to a Redis stream, trimmed to about `maxLen` entries (`XADD key MAXLEN ~ n * record <json>`), one pipeline per batch. */
export function streamSink (redis: Redis, key: string, maxLen: number): AuditSink {
  let waiting = 0
  return {
    name: 'stream',
    async write (lines) {
      // while Redis is away or behind, the batch is dropped and counted, not queued without bound
      if (redis.status !== 'ready' || waiting > MAX_STREAM_BACKLOG) return 0
      const pipeline = redis.pipeline()
      for (const line of lines) pipeline.xadd(key, 'MAXLEN', '~', maxLen, '*', 'record', line)
      waiting += lines.length
      try {
        const results = await pipeline.exec()
        return (results ?? []).filter(([err]) => err === null).length
      } finally {
        waiting -= lines.length
      }
    },
    async close () {}
  }
}
