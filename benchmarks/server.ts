/**
 * Server child of `run.js`: `node server.js <aedes|ce-broker> <scenario>`.
 * Starts one broker on 127.0.0.1, sends `{ type: 'ready', port }` over IPC,
 * answers stats requests, and closes the broker and exits on SIGTERM or when
 * the parent goes away (IPC disconnect).
 */
import { performance } from 'node:perf_hooks'
import { isBrokerKind, isStatsRequest, type BrokerKind, type ServerMessage } from './protocol.js'
import { findScenario } from './scenarios.js'
import type { BenchServer } from './servers/bench-server.js'
import { startAedes } from './servers/aedes.js'
import { startCeBroker } from './servers/ce-broker.js'

/** How long closing may take before the process reports what still holds it, in ms. */
const CLOSE_GRACE_MS = 5_000

function send (message: ServerMessage): void {
  process.send?.(message)
}

async function start (kind: BrokerKind, scenarioName: string | undefined): Promise<BenchServer> {
  const scenario = findScenario(scenarioName)
  return kind === 'aedes' ? await startAedes() : await startCeBroker(scenario.ceBroker())
}

async function main (): Promise<void> {
  const [kind, scenarioName] = process.argv.slice(2)
  if (!isBrokerKind(kind)) throw new Error(`usage: server.js <aedes|ce-broker> <scenario>, got kind ${JSON.stringify(kind)}`)
  if (process.send === undefined) throw new Error('server.js is started by run.js with an IPC channel (fork)')

  const server = await start(kind, scenarioName)
  let stopping: Promise<void> | undefined

  function stop (): void {
    stopping ??= server.close().then(
      function closed () {
        process.off('message', answer)
        if (process.connected) process.disconnect()
        // unref'd: fires only if something still holds the process open, which is a bug worth seeing
        setTimeout(function stuck () {
          process.stderr.write(`server.js (${kind}): still running ${CLOSE_GRACE_MS} ms after close\n`)
          process.exit(1)
        }, CLOSE_GRACE_MS).unref()
      },
      function closeFailed (err: unknown) {
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
