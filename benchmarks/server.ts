/**
 * Server child of `run.js`: `node server.js <aedes|ce-broker> <scenario> [redis=<url>] [receiver=<url>] [node=<a|b>] [registrations=off]`.
 * Starts one broker on 127.0.0.1, sends `{ type: 'ready', port }` over IPC,
 * answers stats requests, and closes the broker and exits on SIGTERM or when
 * the parent goes away (IPC disconnect). `redis=` is the redis-server `run.js` started
 * for a scenario with `redis: true`, `receiver=` the webhook receiver it started for
 * one with `receiver: true`; the scenario reads them from its context. `node=` makes
 * it a node of a cluster scenario's two-node side: ce-broker with the scenario's input
 * plus `redis.url` set to `redis=`. For a scenario with `registrations`, a ce-broker
 * server registers schema versions through its HTTP API from when it is ready until it
 * closes (`schema-registrations.ts`) and reports their counts with its stats, unless
 * given `registrations=off` (the `quiet` side). Every ce-broker server keeps its schema
 * registry (`schemas.dataDir`) in its temporary directory, never in `./data`.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { isBrokerKind, isStatsRequest, type BrokerKind, type ServerMessage } from './protocol.js'
import { findScenario, type Scenario, type ServerContext } from './scenarios.js'
import { SchemaRegistrar } from './schema-registrations.js'
import type { BenchServer } from './servers/bench-server.js'
import { startAedes } from './servers/aedes.js'
import { startCeBroker } from './servers/ce-broker.js'

/** How long closing may take before the process reports what still holds it, in ms. */
const CLOSE_GRACE_MS = 5_000

function send (message: ServerMessage): void {
  process.send?.(message)
}

/** What `run.js` started for this run, from the `name=value` arguments after the scenario. */
interface Services {
  readonly redis?: string
  readonly receiver?: string
  /** Which node of a cluster this is (`a`: publishers', `b`: the subscriber's); only names it, both run alike. */
  readonly node?: string
  /** `off`: register no schema version even if the scenario has `registrations` (its `quiet` side). */
  readonly registrations?: string
}

function parseServices (args: readonly string[]): Services {
  let services: Services = {}
  for (const arg of args) {
    const at = arg.indexOf('=')
    const name = arg.slice(0, at)
    const value = arg.slice(at + 1)
    if (at <= 0 || value === '' || (name !== 'redis' && name !== 'receiver' && name !== 'node' && name !== 'registrations') || (name === 'registrations' && value !== 'off')) {
      throw new Error(`server.js: expected redis=<url>, receiver=<url>, node=<a|b> or registrations=off, got ${JSON.stringify(arg)}`)
    }
    services = { ...services, [name]: value }
  }
  return services
}

/** The context a scenario's `ceBroker()` gets, and the clean-up of what it made. */
class Context implements ServerContext {
  readonly #services: Services
  #tempDir: string | undefined

  constructor (services: Services) {
    this.#services = services
  }

  readonly redisUrl = (): string => {
    if (this.#services.redis === undefined) throw new Error('this scenario needs Redis: set `redis: true` on it so that run.js starts a redis-server')
    return this.#services.redis
  }

  readonly receiverUrl = (): string => {
    if (this.#services.receiver === undefined) throw new Error('this scenario needs a webhook receiver: set `receiver: true` on it so that run.js starts one')
    return this.#services.receiver
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

async function start (kind: BrokerKind, scenario: Scenario, context: Context, node: string | undefined): Promise<BenchServer> {
  if (kind === 'aedes') return await startAedes(scenario.aedesNoDelay === true)
  if (node !== undefined && (scenario.cluster !== true || kind !== 'ce-broker')) throw new Error(`server.js: node=${node} is for the ce-broker nodes of a cluster scenario`)
  try {
    const scenarioInput = scenario.ceBroker(context)
    // the schema registry's versions go to this run's temporary directory (removed after it), never to ./data in the working folder
    const input = { ...scenarioInput, schemas: { ...scenarioInput.schemas, dataDir: scenarioInput.schemas?.dataDir ?? context.tempDir() } }
    // a cluster node: the one-node input, sharing state and routing through the run's Redis
    return await startCeBroker(node === undefined ? input : { ...input, redis: { url: context.redisUrl() } })
  } catch (err: unknown) {
    context.cleanUp()
    throw err
  }
}

async function main (): Promise<void> {
  const [kind, scenarioName, ...rest] = process.argv.slice(2)
  if (!isBrokerKind(kind)) throw new Error(`usage: server.js <aedes|ce-broker> <scenario> [redis=<url>] [receiver=<url>] [node=<a|b>] [registrations=off], got kind ${JSON.stringify(kind)}`)
  if (process.send === undefined) throw new Error('server.js is started by run.js with an IPC channel (fork)')

  const services = parseServices(rest)
  const scenario = findScenario(scenarioName)
  const context = new Context(services)
  const server = await start(kind, scenario, context, services.node)
  let registrar: SchemaRegistrar | undefined
  try {
    registrar = await registrarOf(kind, scenario, server, services)
  } catch (err: unknown) {
    await server.close()
    context.cleanUp()
    throw err
  }
  let stopping: Promise<void> | undefined

  /** Registrations first: none in flight while the broker closes. */
  async function close (): Promise<void> {
    await registrar?.stop()
    await server.close()
  }

  function stop (): void {
    stopping ??= close().then(
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
    // CPU and clock first, together: the webhook counters are read after, asynchronously
    const cpu = process.cpuUsage()
    const stats = {
      type: 'stats',
      id: message.id,
      cpuMicros: cpu.user + cpu.system,
      nowMs: performance.now(),
      rssBytes: process.memoryUsage.rss(),
      ...(registrar === undefined ? {} : { registrations: registrar.counters() })
    } as const
    if (server.webhookCounters === undefined) {
      send(stats)
      return
    }
    server.webhookCounters().then(
      function counted (webhooks) { send({ ...stats, webhooks }) },
      // an answer without counters makes run.js fail the run if it needed them; say why here
      function countFailed (err: unknown) {
        process.stderr.write(`server.js (${kind}): reading the webhook counters failed: ${String(err)}\n`)
        send(stats)
      })
  }

  process.on('message', answer)
  process.once('SIGTERM', stop)
  process.once('disconnect', stop)
  send({ type: 'ready', port: server.port })
}

/** The schema registrar of a ce-broker server whose scenario has `registrations`, unless told `registrations=off`. */
async function registrarOf (kind: BrokerKind, scenario: Scenario, server: BenchServer, services: Services): Promise<SchemaRegistrar | undefined> {
  if (kind !== 'ce-broker' || scenario.registrations === undefined || services.registrations === 'off') return undefined
  if (server.httpUrl === undefined) throw new Error('server.js: the ce-broker server has no HTTP API to register schemas through')
  return await SchemaRegistrar.start(server.httpUrl, scenario.registrations)
}

main().catch(function failed (err: unknown) {
  process.stderr.write(`server.js: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
  process.exit(1)
})
