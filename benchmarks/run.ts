/**
 * `npm run bench`: for every scenario, rounds of (server process + load generator
 * process, + webhook receiver process for a ce-broker run of a scenario with
 * `receiver: true`) per broker kind, alternating the order between rounds, then one
 * line per scenario on stdout:
 *
 *     bench <scenario> ce-broker=<msgs/s> aedes=<msgs/s> ratio=<ce/aedes>
 *
 * (webhook scenarios: ce-broker's figure is the receiver's deliveries/s, or p99 ms for a
 * paced load, against raw Aedes' MQTT msgs/s or p99 ms of the same load; see `figureOf`).
 * That line is a contract (scripts compare it across commits); everything else
 * (per-round figures, CPU shares) goes to stderr and never starts with `bench `.
 * Env: BENCH_ROUNDS (default 5), BENCH_SECONDS (measuring window, default 3),
 * BENCH_WARMUP_SECONDS (default 1), BENCH_ONLY (comma-separated scenario names),
 * BENCH_PROFILE_DIR (servers write V8 CPU profiles there). Exits non-zero if any child fails.
 * Scenarios with `redis: true` get a fresh redis-server per ce-broker run, and are
 * skipped (a stderr line, no `bench` line) when `redis-server` is not on the PATH.
 */
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { Child } from './child.js'
import {
  BROKER_KINDS, isLoadgenMessage, isReceiverMessage, isServerMessage, RECEIVER_PATH,
  type BrokerKind, type LatencyMessage, type LatencySummary, type LoadgenMessage, type LoadResult, type ReadyMessage, type ReceiverMessage,
  type ReceiverStatsMessage, type ResultMessage, type ServerMessage, type StatsMessage, type WebhookCounters
} from './protocol.js'
import { RedisServer, redisServerAvailable, type RedisCpuSample } from './redis-server.js'
import { SCENARIOS, type Scenario } from './scenarios.js'
import { measureValidation } from './validation.js'

const SERVER_SCRIPT = new URL('./server.js', import.meta.url)
const LOADGEN_SCRIPT = new URL('./loadgen.js', import.meta.url)
const RECEIVER_SCRIPT = new URL('./receiver.js', import.meta.url)

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
/**
 * Webhook growth over the window, in seconds of the measured delivery rate, beyond which
 * deliveries are said to have fallen behind publishes (a balanced queue holds about what is in flight).
 */
const QUEUE_GROWTH_WARNING = 0.1
/** Longest the webhook receiver may take to report its port, and to exit after SIGTERM, in ms. */
const RECEIVER_TIMEOUT_MS = 10_000
/** Paced load: the webhook deliveries count as all arrived once none arrived for this long, in ms. */
const SETTLE_QUIET_MS = 300
const SETTLE_POLL_MS = 20
/** Paced load: longest the webhook deliveries may take to arrive after the load ended, in ms. */
const SETTLE_TIMEOUT_MS = 15_000

/** Knobs read once from the environment. */
interface Settings {
  readonly rounds: number
  readonly warmupMs: number
  readonly windowMs: number
  /** Scenario names to run; empty runs them all. */
  readonly only: readonly string[]
}

/** What a ce-broker run with a webhook receiver measured on the webhook side. */
interface WebhookFigures {
  /** Requests the receiver got over the window, per second of the receiver's own clock. */
  readonly deliveriesPerSec: number
  /** Receiver CPU time over the window divided by its wall time; 1 = one core. */
  readonly receiverCpuShare: number
  /** The broker's webhook counters at both ends of the window. */
  readonly windowStart: WebhookCounters
  readonly windowEnd: WebhookCounters
  /**
   * The broker's counters once the load had ended (paced load: once its deliveries had
   * arrived). No event is published after that, so no `queue_full` can follow;
   * `queueDepth` is what was still queued when the broker was stopped (then dropped).
   */
  readonly final: WebhookCounters
  /** Requests the receiver got in the whole run, and those of them without a signature. */
  readonly received: number
  readonly unsigned: number
  /** Paced load: publish → webhook received latency of the events sent in the window. */
  readonly latency: LatencySummary | undefined
}

/** What one (scenario, kind, round) run measured. */
interface RunFigures {
  readonly load: LoadResult
  /** Server CPU time over the loadgen's window divided by the server's wall time; 1 = one core. */
  readonly serverCpuShare: number
  readonly serverRssBytes: number
  /** redis-server's CPU time over the same window divided by the window's wall time; only when the run had one. */
  readonly redisCpuShare: number | undefined
  /** Only for a ce-broker run of a scenario with `receiver: true`. */
  readonly webhook: WebhookFigures | undefined
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

/** The warm-up of `scenario`'s runs: `BENCH_WARMUP_SECONDS`, or the scenario's `minWarmupMs` if longer. */
function warmupMs (scenario: Scenario, settings: Settings): number {
  return Math.max(settings.warmupMs, scenario.minWarmupMs ?? 0)
}

/** A server child: started, asked for its CPU and memory, stopped. */
class ServerProcess {
  readonly #child: Child<ServerMessage>
  #nextId = 1

  /** @param services `redis=<url>`, `receiver=<url>`: what run.js started for this run, passed on to server.js */
  constructor (kind: BrokerKind, scenario: Scenario, services: readonly string[]) {
    // BENCH_PROFILE_DIR: each server writes a V8 CPU profile there when it exits
    const profileDir = process.env.BENCH_PROFILE_DIR
    const execArgv = profileDir === undefined || profileDir === '' ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${scenario.name}-${kind}-${Date.now()}.cpuprofile`]
    this.#child = new Child(`server ${kind}`, SERVER_SCRIPT, [kind, scenario.name, ...services], isServerMessage, undefined, execArgv)
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
 * The webhook receiver child (`receiver.js`): started before the broker, so that its URL
 * can go into the broker's config; asked for its counters and for latency percentiles;
 * stopped after the broker.
 */
class ReceiverProcess {
  /** `http://127.0.0.1:<port>/webhook`, for `receiverUrl()`. */
  readonly url: string
  readonly #child: Child<ReceiverMessage>
  #nextId = 1

  private constructor (child: Child<ReceiverMessage>, port: number) {
    this.#child = child
    this.url = `http://127.0.0.1:${port}${RECEIVER_PATH}`
  }

  /** Fork receiver.js and wait for its port. */
  static async start (): Promise<ReceiverProcess> {
    const child = new Child('receiver', RECEIVER_SCRIPT, [], isReceiverMessage)
    try {
      const isReady = (m: ReceiverMessage): m is ReadyMessage => m.type === 'ready'
      return new ReceiverProcess(child, (await child.next(isReady, RECEIVER_TIMEOUT_MS)).port)
    } catch (err: unknown) {
      child.kill()
      throw err
    }
  }

  async stats (): Promise<ReceiverStatsMessage> {
    const id = this.#nextId++
    const isAnswer = (m: ReceiverMessage): m is ReceiverStatsMessage => m.type === 'stats' && m.id === id
    const answer = this.#child.next(isAnswer, STATS_TIMEOUT_MS)
    this.#child.send({ type: 'stats', id })
    return await answer
  }

  /** Percentiles of the requests whose send stamp is in [`fromMs`, `toMs`) (wall clock). */
  async latency (fromMs: number, toMs: number): Promise<LatencySummary> {
    const id = this.#nextId++
    const isAnswer = (m: ReceiverMessage): m is LatencyMessage => m.type === 'latency' && m.id === id
    const answer = this.#child.next(isAnswer, STATS_TIMEOUT_MS)
    this.#child.send({ type: 'latency', id, fromMs, toMs })
    return (await answer).summary
  }

  /**
   * Wait until no stamped request arrived for SETTLE_QUIET_MS: the deliveries of a paced
   * load's last events are in. Fails after SETTLE_TIMEOUT_MS.
   */
  async settle (): Promise<void> {
    const from = performance.now()
    let seen = (await this.stats()).stamped
    let quietSince = performance.now()
    for (;;) {
      await sleep(SETTLE_POLL_MS)
      const now = performance.now()
      const stamped = (await this.stats()).stamped
      if (stamped !== seen) {
        seen = stamped
        quietSince = now
      } else if (now - quietSince >= SETTLE_QUIET_MS) {
        return
      }
      if (now - from > SETTLE_TIMEOUT_MS) throw new Error(`receiver: webhook deliveries still arriving ${SETTLE_TIMEOUT_MS} ms after the load ended`)
    }
  }

  async stop (): Promise<void> { await this.#child.stop(RECEIVER_TIMEOUT_MS) }
  kill (): void { this.#child.kill() }
}

/**
 * Start `kind` for `scenario`, put the scenario's load on it, stop it. A scenario with
 * `redis: true` gets an empty redis-server of its own for a ce-broker run, started
 * before the broker and stopped after it; raw Aedes stays the memory-only baseline.
 * Likewise a scenario with `receiver: true` gets a webhook receiver for a ce-broker run.
 */
async function measure (scenario: Scenario, kind: BrokerKind, settings: Settings): Promise<RunFigures> {
  const redis = kind === 'ce-broker' && scenario.redis === true ? await RedisServer.start() : undefined
  let receiver: ReceiverProcess | undefined
  let figures: RunFigures
  try {
    receiver = kind === 'ce-broker' && scenario.receiver === true ? await ReceiverProcess.start() : undefined
    figures = await measureBroker(scenario, kind, settings, redis, receiver)
  } catch (err: unknown) {
    // the broker's failure is the one to report, not how Redis or the receiver took being killed
    receiver?.kill()
    redis?.kill()
    throw err
  }
  try {
    await receiver?.stop()
  } catch (err: unknown) {
    redis?.kill()
    throw err
  }
  await redis?.stop()
  return figures
}

async function measureBroker (scenario: Scenario, kind: BrokerKind, settings: Settings, redis: RedisServer | undefined, receiver: ReceiverProcess | undefined): Promise<RunFigures> {
  const services = [...(redis === undefined ? [] : [`redis=${redis.url}`]), ...(receiver === undefined ? [] : [`receiver=${receiver.url}`])]
  const server = new ServerProcess(kind, scenario, services)
  try {
    const port = await server.ready()
    // the loadgen says when its window opens and closes; sample the server (and Redis, and the
    // receiver) at both ends. A failed sample is kept as a value: if the loadgen fails too, its
    // error is the one to report
    const samples: Array<Promise<StatsMessage | Error>> = []
    const redisSamples: Array<Promise<RedisCpuSample | Error>> = []
    const receiverSamples: Array<Promise<ReceiverStatsMessage | Error>> = []
    /** The loadgen's wall clock at the window's start and end: the paced load's events are picked by send stamp. */
    const windowAtMs: number[] = []
    const loadgen = new Child<LoadgenMessage>('loadgen', LOADGEN_SCRIPT,
      [scenario.name, String(port), String(warmupMs(scenario, settings)), String(settings.windowMs)],
      isLoadgenMessage,
      function onLoadgenMessage (message) {
        if (message.type !== 'window') return
        windowAtMs.push(message.atMs)
        samples.push(server.stats().catch(toError))
        if (redis !== undefined) redisSamples.push(redis.cpu().catch(toError))
        if (receiver !== undefined) receiverSamples.push(receiver.stats().catch(toError))
      })
    let result: LoadResult
    try {
      const isResult = (m: LoadgenMessage): m is ResultMessage => m.type === 'result'
      // the loadgen allows the backlog as long to drain as the load lasted (see its DRAIN_TIMEOUT_MS)
      const budgetMs = 2 * (warmupMs(scenario, settings) + settings.windowMs) + LOADGEN_SLACK_MS
      result = (await loadgen.next(isResult, budgetMs)).result
      await loadgen.ended(LOADGEN_SLACK_MS)
    } finally {
      loadgen.kill()
    }
    const [start, end] = await Promise.all(samples)
    const redisCpu = await Promise.all(redisSamples)
    // the webhook side is read before the broker stops: its final counters come from it
    const webhook = receiver === undefined ? undefined : await webhookFigures(scenario, server, receiver, [start, end], await Promise.all(receiverSamples), windowAtMs)
    await server.stop()
    if (start instanceof Error) throw start
    if (end instanceof Error) throw end
    if (start === undefined || end === undefined) throw new Error(`loadgen sent ${samples.length} window messages, expected 2`)
    if (scenario.load.mode === 'paced' && (result.latency?.count ?? 0) === 0) throw new Error('the MQTT subscriber received no stamped event sent in the window')
    return {
      load: result,
      serverCpuShare: (end.cpuMicros - start.cpuMicros) / 1000 / (end.nowMs - start.nowMs),
      serverRssBytes: end.rssBytes,
      redisCpuShare: redis === undefined ? undefined : cpuShare(redisCpu),
      webhook
    }
  } finally {
    server.kill()
  }
}

/**
 * The webhook side of a run, once the load has ended: the receiver's rate and CPU over the
 * window, the broker's webhook counters at both ends of it and now, and for a paced load
 * the latency of the events sent in the window, once their deliveries have arrived.
 */
async function webhookFigures (
  scenario: Scenario, server: ServerProcess, receiver: ReceiverProcess,
  serverSamples: ReadonlyArray<StatsMessage | Error | undefined>, receiverSamples: ReadonlyArray<ReceiverStatsMessage | Error>, windowAtMs: readonly number[]
): Promise<WebhookFigures> {
  const [serverStart, serverEnd] = serverSamples
  const [start, end] = receiverSamples
  if (start instanceof Error) throw start
  if (end instanceof Error) throw end
  if (serverStart instanceof Error) throw serverStart
  if (serverEnd instanceof Error) throw serverEnd
  const [fromMs, toMs] = windowAtMs
  if (start === undefined || end === undefined || serverStart === undefined || serverEnd === undefined || fromMs === undefined || toMs === undefined) {
    throw new Error(`loadgen sent ${windowAtMs.length} window messages, expected 2`)
  }
  const paced = scenario.load.mode === 'paced'
  if (paced) await receiver.settle()
  const latency = paced ? await receiver.latency(fromMs, toMs) : undefined
  if (latency?.count === 0) throw new Error('the webhook receiver got no stamped event sent in the window')
  const [final, received] = await Promise.all([server.stats(), receiver.stats()])
  const counters = (stats: StatsMessage): WebhookCounters => {
    if (stats.webhooks === undefined) throw new Error('the ce-broker server sent no webhook counters')
    return stats.webhooks
  }
  const seconds = (end.nowMs - start.nowMs) / 1000
  return {
    deliveriesPerSec: (end.requests - start.requests) / seconds,
    receiverCpuShare: (end.cpuMicros - start.cpuMicros) / 1e6 / seconds,
    windowStart: counters(serverStart),
    windowEnd: counters(serverEnd),
    final: counters(final),
    received: received.requests,
    unsigned: received.unsigned,
    latency
  }
}

/**
 * The figure a run puts in its scenario's `bench` line. A run of the broker's MQTT side
 * (raw Aedes always; ce-broker unless the scenario has a receiver) gives its MQTT
 * subscriber's msgs/s, or p99 latency in ms for a paced load; a ce-broker run with a
 * receiver gives the receiver's webhook deliveries/s, or p99 publish → webhook received.
 */
function figureOf (scenario: Scenario, run: RunFigures): number {
  const latency = run.webhook === undefined ? run.load.latency : run.webhook.latency
  if (scenario.load.mode === 'paced') {
    if (latency === undefined) throw new Error(`${scenario.name}: a paced run without latency figures`)
    return latency.p99Ms
  }
  return run.webhook === undefined ? run.load.msgsPerSec : run.webhook.deliveriesPerSec
}

/** A figure as the `bench` line prints it: rates in whole units, latencies in ms with 2 decimals. */
function formatFigure (scenario: Scenario, value: number): string {
  return scenario.load.mode === 'paced' ? value.toFixed(2) : String(Math.round(value))
}

function latencyText (latency: LatencySummary): string {
  return `p50 ${latency.p50Ms.toFixed(2)} ms p99 ${latency.p99Ms.toFixed(2)} ms max ${latency.maxMs.toFixed(2)} ms (${latency.count} events)`
}

/** The stderr line of a run's webhook side. */
function webhookDetail (label: string, run: RunFigures, webhook: WebhookFigures): string {
  const { windowStart: from, windowEnd: to, final } = webhook
  const sentInWindow = Math.round(run.load.offeredPerSec * run.load.windowMs / 1000)
  return `${label} webhooks ${Math.round(webhook.deliveriesPerSec)} deliveries/s` +
    (webhook.latency === undefined ? '' : ` | publish → webhook ${latencyText(webhook.latency)} of ${sentInWindow} sent`) +
    ` | receiver cpu ${percent(webhook.receiverCpuShare)}` +
    ` | queue depth ${from.queueDepth} → ${to.queueDepth} over the window, ${final.queueDepth} left at the end` +
    ` | window: delivered ${to.delivered - from.delivered}, queue_full ${to.queueFull - from.queueFull}, failed ${to.failed - from.failed}` +
    ` | run: received ${webhook.received} (unsigned ${webhook.unsigned}), queue_full ${final.queueFull}, failed ${final.failed}`
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
  if (warmupMs(scenario, settings) !== settings.warmupMs) detail(`${scenario.name} warms up for ${warmupMs(scenario, settings)} ms (its minimum), not ${settings.warmupMs} ms`)
  for (let round = 0; round < settings.rounds; round++) {
    // alternate (aedes, ce, ce, aedes, ...) so drift in machine load hits both kinds alike
    const order = round % 2 === 0 ? BROKER_KINDS : [...BROKER_KINDS].reverse()
    for (const kind of order) {
      const run = await measure(scenario, kind, settings)
      figures.get(kind)?.push(run)
      const { load } = run
      const label = `${scenario.name} round ${round + 1}/${settings.rounds} ${kind.padEnd(9)}`
      detail(`${label} ${Math.round(load.msgsPerSec)} msgs/s` +
        ` (offered ${Math.round(load.offeredPerSec)}/s, ${(load.bytesPerSec / 1e6).toFixed(1)} MB/s in)` +
        (load.latency === undefined ? '' : ` | publish → mqtt ${latencyText(load.latency)}`) +
        ` | loadgen cpu ${percent(load.cpuShare)} elu ${percent(load.eventLoopUtilization)}` +
        ` | server cpu ${percent(run.serverCpuShare)} rss ${(run.serverRssBytes / 2 ** 20).toFixed(0)} MiB` +
        (run.redisCpuShare === undefined ? '' : ` | redis cpu ${percent(run.redisCpuShare)}`) +
        ` | backlog ${load.backlogMessages} msgs in ${Math.round(load.drainMs)} ms, undelivered ${load.undelivered}`)
      if (run.webhook !== undefined) detail(webhookDetail(label, run, run.webhook))
    }
  }

  const of = (kind: BrokerKind): readonly RunFigures[] => figures.get(kind) ?? []
  const figure = (kind: BrokerKind): number => median(of(kind).map((r) => figureOf(scenario, r)))
  const ce = figure('ce-broker')
  const aedes = figure('aedes')
  const all = [...figures.values()].flat()
  const loadgenCpu = all.map((r) => r.load.cpuShare)
  const redisCpu = all.flatMap((r) => r.redisCpuShare === undefined ? [] : [r.redisCpuShare])
  detail(`${scenario.name} medians over ${settings.rounds} rounds of ${settings.windowMs} ms:` +
    ` loadgen cpu ${percent(median(loadgenCpu))} (max ${percent(Math.max(...loadgenCpu))}),` +
    ` server cpu ce-broker ${percent(median(of('ce-broker').map((r) => r.serverCpuShare)))}` +
    ` aedes ${percent(median(of('aedes').map((r) => r.serverCpuShare)))}` +
    (redisCpu.length === 0 ? '' : `, redis cpu (ce-broker runs) ${percent(median(redisCpu))}`))
  const webhooks = all.flatMap((r) => r.webhook === undefined ? [] : [r.webhook])
  if (webhooks.length > 0) {
    detail(`${scenario.name} webhooks over ${webhooks.length} ce-broker runs: median receiver cpu ${percent(median(webhooks.map((w) => w.receiverCpuShare)))},` +
      ` queue_full ${webhooks.map((w) => w.final.queueFull).join(' ')}, failed ${webhooks.map((w) => w.final.failed).join(' ')}` +
      ` (per run; dead-lettered), still queued at the end ${webhooks.map((w) => w.final.queueDepth).join(' ')}`)
    const deadLettered = webhooks.reduce((sum, w) => sum + w.final.queueFull + w.final.failed, 0)
    if (deadLettered !== 0) detail(`${scenario.name} warning: ${deadLettered} webhook deliveries were dead-lettered (queue_full or failed): the figure is what was left after refusing them`)
    // a queue that grew over the window means deliveries fell behind publishes: the figure is then
    // the delivery rate of an overloaded node, whose publishers outrun it, not a sustained rate
    const grew = webhooks.filter((w) => w.windowEnd.queueDepth - w.windowStart.queueDepth > QUEUE_GROWTH_WARNING * w.deliveriesPerSec)
    if (scenario.load.mode === 'fanin-qos0' && grew.length > 0) {
      detail(`${scenario.name} warning: in ${grew.length} of ${webhooks.length} runs the webhook queue grew by over ${QUEUE_GROWTH_WARNING * 1000} ms of deliveries in the window: deliveries fell behind publishes`)
    }
    const unsigned = webhooks.reduce((sum, w) => sum + w.unsigned, 0)
    if (unsigned !== 0) detail(`${scenario.name} warning: the receiver got ${unsigned} webhook requests without a signature`)
  }
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
  const ratios = of('aedes').map((run, i) => {
    const ceRun = ceRuns[i]
    return ceRun === undefined ? 0 : figureOf(scenario, ceRun) / figureOf(scenario, run)
  })
  detail(`${scenario.name} per-round ratios: ${ratios.map((r) => r.toFixed(3)).join(' ')}`)
  process.stdout.write(`bench ${scenario.name} ce-broker=${formatFigure(scenario, ce)} aedes=${formatFigure(scenario, aedes)} ratio=${median(ratios).toFixed(3)}\n`)
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
