import { pino, type Logger } from 'pino'
import type { LogLevel } from './config/index.js'

export type { Logger } from 'pino'

/** Paths pino replaces with `[redacted]` in every line, whatever plugin logs them. */
export const REDACT_PATHS: readonly string[] = [
  'password', '*.password', 'secret', '*.secret',
  'authorization', '*.authorization', 'req.headers.authorization', 'headers.authorization'
]

/**
 * The root logger of one broker: JSON lines on stdout. For people, pipe it
 * through `pino-pretty`; the broker never pretty-prints by itself.
 */
export function createLogger (level: LogLevel, nodeId: string): Logger {
  return pino({
    level,
    base: { node: nodeId },
    redact: { paths: [...REDACT_PATHS], censor: '[redacted]' }
  })
}
