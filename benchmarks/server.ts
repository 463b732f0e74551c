/**
 * Server child of `run.js`: `node server.js <aedes|ce-broker> <scenario> [<redis-url>]`.
 * Starts one broker on 127.0.0.1, sends `{ type: 'ready', port }` over IPC,
 * answers stats requests, and closes the broker and exits on SIGTERM or when
 * the parent goes away (IPC disconnect). `<redis-url>` is the redis-server `run.js`
 * started for a scenario with `redis: true`; the scenario reads it from its context.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { isBrokerKind, isStatsRequest, type BrokerKind, type ServerMessage } from './protocol.js'
import { findScenario, type ServerContext } from './scenarios.js'
import type { BenchServer } from './servers/bench-server.js'
import { startAedes } from './servers/aedes.js'
import { startCeBroker } from './servers/ce-broker.js'

/** How long closing may take before the process reports what still holds it, in ms. */
const CLOSE_GRACE_MS = 5_000

function send (message: ServerMessage): void {
  process.send?.(message)
}

/** The context a scenario's `ceBroker()` gets, and the clean-up of what it made. */
class Context implements ServerContext {
  readonly #redisUrl: string | undefined
  #tempDir: string | undefined

  constructor (redisUrl: string | undefined) {
    this.#redisUrl = redisUrl
  }

  readonly redisUrl = (): string => {
    if (this.#redisUrl === undefined) throw new Error('this scenario needs Redis: set `redis: true` on it so that run.js starts a redis-server')
    return this.#redisUrl
  }

  readonly tempDir = (): string => {
    this.#tempDir ??= mkdtempSync(join(tmpdir(), 'ce-broker-bench-'))
    return this.#tempDir
  }

  /** Remove the temporary directory, if one was made; only once the broker no longer writes there. */
  cleanUp (): void {
    if (this.#tempDir !== undefined) rmSync(this.#tempDir, { recursive: true, force: true })
    this.#tempDir = undefined
  }
}

async function start (kind: BrokerKind, scenarioName: string | undefined, context: Context): Promise<BenchServer> {
  const scenario = findScenario(scenarioName)
  if (kind === 'aedes') return await startAedes()
  try {
    return await startCeBroker(scenario.ceBroker(context))
  } catch (err: unknown) {
    context.cleanUp()
    throw err
  }
}

async function main (): Promise<void> {
  const [kind, scenarioName, redisUrl] = process.argv.slice(2)
  if (!isBrokerKind(kind)) throw new Error(`usage: server.js <aedes|ce-broker> <scenario> [<redis-url>], got kind ${JSON.stringify(kind)}`)
  if (process.send === undefined) throw new Error('server.js is started by run.js with an IPC channel (fork)')

  const context = new Context(redisUrl)
  const server = await start(kind, scenarioName, context)
  let stopping: Promise<void> | undefined

  function stop (): void {
    stopping ??= server.close().then(
      function closed () {
        context.cleanUp()
        process.off('message', answer)
        if (process.connected) process.disconnect()
        // unref'd: fires only if something still holds the process open, which is a bug worth seeing
        setTimeout(function stuck () {
          process.stderr.write(`server.js (${kind}): still running ${CLOSE_GRACE_MS} ms after close\n`)
          process.exit(1)
        }, CLOSE_GRACE_MS).unref()
      },
      function closeFailed (err: unknown) {
        context.cleanUp()
        process.stderr.write(`server.js (${kind}): close failed: ${String(err)}\n`)
        process.exit(1)
      })
  }

  function answer (message: unknown): void {
    if (!isStatsRequest(message)) return
    const cpu = process.cpuUsage()
    send({ type: 'stats', id: message.id, cpuMicros: cpu.user + cpu.system, nowMs: performance.now(), rssBytes: process.memoryUsage.rss() })
  }

  process.on('message', answer)
  process.once('SIGTERM', stop)
  process.once('disconnect', stop)
  send({ type: 'ready', port: server.port })
}

main().catch(function failed (err: unknown) {
  process.stderr.write(`server.js: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
  process.exit(1)
})
