import { Writable } from 'node:stream'
import { pino } from 'pino'
import type { Logger } from '../../src/core/logger.js'

/** A pino logger at `level` whose lines land, parsed, in `lines`. */
export function captureLogs (level: 'debug' | 'info' | 'warn' | 'error' = 'info'): { logger: Logger, lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = []
  const sink = new Writable({ write (chunk: Buffer, _enc, done) { lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>); done() } })
  return { logger: pino({ level }, sink), lines }
}
