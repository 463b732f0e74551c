/**
 * `npm run bench`: for every scenario, rounds of (server process + load generator
 * process) per broker kind, alternating the order between rounds, then one line
 * per scenario on stdout:
 *
 *     bench <scenario> ce-broker=<msgs/s> aedes=<msgs/s> ratio=<ce/aedes>
 *
 * That line is a contract (scripts compare it across commits); everything else
 * (per-round figures, CPU shares) goes to stderr and never starts with `bench `.
 * Env: BENCH_ROUNDS (default 5), BENCH_SECONDS (measuring window, default 3),
 * BENCH_WARMUP_SECONDS (default 1), BENCH_ONLY (comma-separated scenario names),
 * BENCH_PROFILE_DIR (servers write V8 CPU profiles there). Exits non-zero if any child fails.
 * Scenarios with `redis: true` get a fresh redis-server per ce-broker run, and are
 * skipped (a stderr line, no `bench` line) when `redis-server` is not on the PATH.
 */
import { Child } from './child.js'
import {
  BROKER_KINDS, isLoadgenMessage, isServerMessage,
  type BrokerKind, type LoadgenMessage, type LoadResult, type ReadyMessage, type ResultMessage, type ServerMessage, type StatsMessage
} from './protocol.js'
import { RedisServer, redisServerAvailable, type RedisCpuSample } from './redis-server.js'
import { SCENARIOS, type Scenario } from './scenarios.js'
import { measureValidation } from './validation.js'

const SERVER_SCRIPT = new URL('./server.js', import.meta.url)
const LOADGEN_SCRIPT = new URL('./loadgen.js', import.meta.url)

/** Longest a broker may take to report its port, in ms. */
const SERVER_START_TIMEOUT_MS = 20_000
/** Longest a broker may take to close and exit after SIGTERM, in ms. */
const SERVER_STOP_TIMEOUT_MS = 10_000
/** Longest a server may take to answer a stats request, in ms (its event loop is saturated while loaded). */
const STATS_TIMEOUT_MS = 5_000
/** Slack over twice warm-up + window (the load, then its backlog draining) for the loadgen to connect, report and exit, in ms. */
const LOADGEN_SLACK_MS = 20_000
/** Loadgen CPU share (1 = one core) above which it may be what limits the figures. */
const LOADGEN_CPU_WARNING = 0.8

/** Knobs read once from the environment. */
interface Settings {
  readonly rounds: number
  readonly warmupMs: number
  readonly windowMs: number
  /** Scenario names to run; empty runs them all. */
  readonly only: readonly string[]
}

/** What one (scenario, kind, round) run measured. */
interface RunFigures {
  readonly load: LoadResult
  /** Server CPU time over the loadgen's window divided by the server's wall time; 1 = one core. */
  readonly serverCpuShare: number
  readonly serverRssBytes: number
  /** redis-server's CPU time over the same window divided by the window's wall time; only when the run had one. */
  readonly redisCpuShare: number | undefined
}

function readSettings (env: NodeJS.ProcessEnv): Settings {
  const number = (name: string, fallback: number, min: number, integer: boolean): number => {
    const raw = env[name]
    if (raw === undefined || raw === '') return fallback
    const value = Number(raw)
    if (!Number.isFinite(value) || value < min || (integer && !Number.isInteger(value))) {
      throw new Error(`${name} must be ${integer ? 'an integer' : 'a number'} >= ${min}, got ${JSON.stringify(raw)}`)
    }
    return value
  }
  return {
    rounds: number('BENCH_ROUNDS', 5, 1, true),
    windowMs: Math.round(number('BENCH_SECONDS', 3, 0.1, false) * 1000),
    warmupMs: Math.round(number('BENCH_WARMUP_SECONDS', 1, 0, false) * 1000),
    only: (env.BENCH_ONLY ?? '').split(',').map((name) => name.trim()).filter((name) => name !== '')
  }
}

/** A server child: started, asked for its CPU and memory, stopped. */
class ServerProcess {
  readonly #child: Child<ServerMessage>
  #nextId = 1

  /** @param redisUrl the redis-server started for this run, passed on as server.js's third argument */
  constructor (kind: BrokerKind, scenario: Scenario, redisUrl: string | undefined) {
    // BENCH_PROFILE_DIR: each server writes a V8 CPU profile there when it exits
    const profileDir = process.env.BENCH_PROFILE_DIR
    const execArgv = profileDir === undefined || profileDir === '' ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${scenario.name}-${kind}-${Date.now()}.cpuprofile`]
    const args = redisUrl === undefined ? [kind, scenario.name] : [kind, scenario.name, redisUrl]
    this.#child = new Child(`server ${kind}`, SERVER_SCRIPT, args, isServerMessage, undefined, execArgv)
  }

  async ready (): Promise<number> {
    const isReady = (m: ServerMessage): m is ReadyMessage => m.type === 'ready'
    return (await this.#child.next(isReady, SERVER_START_TIMEOUT_MS)).port
  }

  async stats (): Promise<StatsMessage> {
    const id = this.#nextId++
    const isAnswer = (m: ServerMessage): m is StatsMessage => m.type === 'stats' && m.id === id
    const answer = this.#child.next(isAnswer, STATS_TIMEOUT_MS)
    this.#child.send({ type: 'stats', id })
    return await answer
  }

  async stop (): Promise<void> { await this.#child.stop(SERVER_STOP_TIMEOUT_MS) }
  kill (): void { this.#child.kill() }
}

/**
 * Start `kind` for `scenario`, put the scenario's load on it, stop it. A scenario with
 * `redis: true` gets an empty redis-server of its own for a ce-broker run, started
 * before the broker and stopped after it; raw Aedes stays the memory-only baseline.
 */
async function measure (scenario: Scenario, kind: BrokerKind, settings: Settings): Promise<RunFigures> {
  const redis = kind === 'ce-broker' && scenario.redis === true ? await RedisServer.start() : undefined
  let figures: RunFigures
  try {
    figures = await measureBroker(scenario, kind, settings, redis)
  } catch (err: unknown) {
    // the broker's failure is the one to report, not how Redis took being killed
    redis?.kill()
    throw err
  }
  await redis?.stop()
  return figures
}

async function measureBroker (scenario: Scenario, kind: BrokerKind, settings: Settings, redis: RedisServer | undefined): Promise<RunFigures> {
  const server = new ServerProcess(kind, scenario, redis?.url)
  try {
    const port = await server.ready()
    // the loadgen says when its window opens and closes; sample the server (and Redis) at both ends.
    // A failed sample is kept as a value: if the loadgen fails too, its error is the one to report
    const samples: Array<Promise<StatsMessage | Error>> = []
    const redisSamples: Array<Promise<RedisCpuSample | Error>> = []
    const loadgen = new Child<LoadgenMessage>('loadgen', LOADGEN_SCRIPT,
      [scenario.name, String(port), String(settings.warmupMs), String(settings.windowMs)],
      isLoadgenMessage,
      function onLoadgenMessage (message) {
        if (message.type !== 'window') return
        samples.push(server.stats().catch(toError))
        if (redis !== undefined) redisSamples.push(redis.cpu().catch(toError))
      })
    let result: LoadResult
    try {
      const isResult = (m: LoadgenMessage): m is ResultMessage => m.type === 'result'
      // the loadgen allows the backlog as long to drain as the load lasted (see its DRAIN_TIMEOUT_MS)
      const budgetMs = 2 * (settings.warmupMs + settings.windowMs) + LOADGEN_SLACK_MS
      result = (await loadgen.next(isResult, budgetMs)).result
      await loadgen.ended(LOADGEN_SLACK_MS)
    } finally {
      loadgen.kill()
    }
    const [start, end] = await Promise.all(samples)
    const redisCpu = await Promise.all(redisSamples)
    await server.stop()
    if (start instanceof Error) throw start
    if (end instanceof Error) throw end
    if (start === undefined || end === undefined) throw new Error(`loadgen sent ${samples.length} window messages, expected 2`)
    return {
      load: result,
      serverCpuShare: (end.cpuMicros - start.cpuMicros) / 1000 / (end.nowMs - start.nowMs),
      serverRssBytes: end.rssBytes,
      redisCpuShare: redis === undefined ? undefined : cpuShare(redisCpu)
    }
  } finally {
    server.kill()
  }
}

/** CPU share between the two samples of a window (1 = one core); throws a failed sample's error. */
function cpuShare (samples: ReadonlyArray<RedisCpuSample | Error>): number {
  const [start, end] = samples
  if (start instanceof Error) throw start
  if (end instanceof Error) throw end
  if (start === undefined || end === undefined) throw new Error(`got ${samples.length} Redis CPU samples, expected 2`)
  return (end.cpuSeconds - start.cpuSeconds) * 1000 / (end.atMs - start.atMs)
}

function toError (err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err))
}

function median (values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  const upper = sorted[mid] ?? Number.NaN
  return sorted.length % 2 === 1 ? upper : ((sorted[mid - 1] ?? Number.NaN) + upper) / 2
}

function percent (share: number): string {
  return `${(share * 100).toFixed(0)}%`
}

/** A stderr line; detail lines must never start with `bench `, which marks result lines. */
function detail (line: string): void {
  process.stderr.write(`${line}\n`)
}

async function runScenario (scenario: Scenario, settings: Settings): Promise<void> {
  const figures = new Map<BrokerKind, RunFigures[]>(BROKER_KINDS.map((kind) => [kind, []]))
  for (let round = 0; round < settings.rounds; round++) {
    // alternate (aedes, ce, ce, aedes, ...) so drift in machine load hits both kinds alike
    const order = round % 2 === 0 ? BROKER_KINDS : [...BROKER_KINDS].reverse()
    for (const kind of order) {
      const run = await measure(scenario, kind, settings)
      figures.get(kind)?.push(run)
      const { load } = run
      detail(`${scenario.name} round ${round + 1}/${settings.rounds} ${kind.padEnd(9)} ${Math.round(load.msgsPerSec)} msgs/s` +
        ` (offered ${Math.round(load.offeredPerSec)}/s, ${(load.bytesPerSec / 1e6).toFixed(1)} MB/s in)` +
        ` | loadgen cpu ${percent(load.cpuShare)} elu ${percent(load.eventLoopUtilization)}` +
        ` | server cpu ${percent(run.serverCpuShare)} rss ${(run.serverRssBytes / 2 ** 20).toFixed(0)} MiB` +
        (run.redisCpuShare === undefined ? '' : ` | redis cpu ${percent(run.redisCpuShare)}`) +
        ` | backlog ${load.backlogMessages} msgs in ${Math.round(load.drainMs)} ms, undelivered ${load.undelivered}`)
    }
  }

  const of = (kind: BrokerKind): readonly RunFigures[] => figures.get(kind) ?? []
  const rate = (kind: BrokerKind): number => median(of(kind).map((r) => r.load.msgsPerSec))
  const ce = rate('ce-broker')
  const aedes = rate('aedes')
  const all = [...figures.values()].flat()
  const loadgenCpu = all.map((r) => r.load.cpuShare)
  const redisCpu = all.flatMap((r) => r.redisCpuShare === undefined ? [] : [r.redisCpuShare])
  detail(`${scenario.name} medians over ${settings.rounds} rounds of ${settings.windowMs} ms:` +
    ` loadgen cpu ${percent(median(loadgenCpu))} (max ${percent(Math.max(...loadgenCpu))}),` +
    ` server cpu ce-broker ${percent(median(of('ce-broker').map((r) => r.serverCpuShare)))}` +
    ` aedes ${percent(median(of('aedes').map((r) => r.serverCpuShare)))}` +
    (redisCpu.length === 0 ? '' : `, redis cpu (ce-broker runs) ${percent(median(redisCpu))}`))
  const undelivered = all.reduce((sum, r) => sum + r.load.undelivered, 0)
  if (undelivered !== 0) {
    detail(`${scenario.name} warning: ${undelivered} messages were written but never received once the backlog drained`)
  }
  if (Math.max(...loadgenCpu) > LOADGEN_CPU_WARNING) {
    detail(`${scenario.name} warning: the load generator used over ${percent(LOADGEN_CPU_WARNING)} of a core; it may be what limits these figures`)
  }
  // The ratio is the median of each round's own ratio: a round measures both brokers back to
  // back, so a machine that slows down for a while slows both sides of that round alike.
  const ceRuns = of('ce-broker')
  const ratios = of('aedes').map((run, i) => (ceRuns[i]?.load.msgsPerSec ?? 0) / run.load.msgsPerSec)
  detail(`${scenario.name} per-round ratios: ${ratios.map((r) => r.toFixed(3)).join(' ')}`)
  process.stdout.write(`bench ${scenario.name} ce-broker=${Math.round(ce)} aedes=${Math.round(aedes)} ratio=${median(ratios).toFixed(3)}\n`)
}

async function main (): Promise<void> {
  const settings = readSettings(process.env)
  const known = [...SCENARIOS.map((s) => s.name), 'validation-us']
  const unknown = settings.only.filter((name) => !known.includes(name))
  if (unknown.length > 0) throw new Error(`BENCH_ONLY names unknown scenarios ${unknown.join(', ')} (known: ${known.join(', ')})`)
  const wanted = (name: string): boolean => settings.only.length === 0 || settings.only.includes(name)
  let redisAvailable: boolean | undefined
  for (const scenario of SCENARIOS) {
    if (!wanted(scenario.name)) continue
    if (scenario.redis === true && !(redisAvailable ??= redisServerAvailable())) {
      // a missing optional tool is not a failure of the run: say so, and print no result line
      detail(`${scenario.name} skipped: redis-server is not on the PATH (install Redis to run this scenario)`)
      continue
    }
    await runScenario(scenario, settings)
  }
  if (!wanted('validation-us')) return

  // The checks alone, in this process: here the baseline column is JSON.parse of the same
  // payload, the least any broker that looks at events must spend (raw Aedes never parses).
  const micro = await measureValidation(settings.rounds)
  detail(`validation-us best of ${settings.rounds} rounds: JSON.parse ${micro.parseUs.toFixed(3)} µs, whole check ${micro.checkUs.toFixed(3)} µs,` +
    ` validation beyond JSON.parse ${(micro.checkUs - micro.parseUs).toFixed(3)} µs per event`)
  process.stdout.write(`bench validation-us ce-broker=${micro.checkUs.toFixed(3)} aedes=${micro.parseUs.toFixed(3)} ratio=${(micro.checkUs / micro.parseUs).toFixed(3)}\n`)
}

main().catch(function failed (err: unknown) {
  process.stderr.write(`benchmark failed: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exitCode = 1
})
