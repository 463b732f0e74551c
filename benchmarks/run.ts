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
 * A scenario with `cluster: true` measures a third side per round, two ce-broker nodes
 * sharing a redis-server, and adds two fields:
 *
 *     bench <scenario> ce-broker=<cluster msgs/s> aedes=<msgs/s> ratio=<cluster/aedes> single=<one node msgs/s> vs-single=<cluster/single>
 *
 * A scenario with `registrations` has the ce-broker node register a schema version every
 * `everyMs` while loaded, measures a third side per round, `quiet` (the same node
 * registering nothing), and adds two fields:
 *
 *     bench <scenario> ce-broker=<msgs/s while registering> aedes=<msgs/s> ratio=<ce/aedes> quiet=<msgs/s not registering> vs-quiet=<ce/quiet>
 *
 * Such a run fails unless at least (window / `everyMs`) − 1 versions were created (201)
 * in each ce-broker run's window and every registration was answered 201.
 * That line is a contract (scripts compare it across commits); everything else
 * (per-round figures, CPU shares) goes to stderr and never starts with `bench `.
 * Env: BENCH_ROUNDS (default 5), BENCH_SECONDS (measuring window, default 3),
 * BENCH_WARMUP_SECONDS (default 1), BENCH_ONLY (comma-separated scenario names),
 * BENCH_PROFILE_DIR (servers write V8 CPU profiles there). Exits non-zero if any child fails.
 * Scenarios with `redis: true` get a fresh redis-server per ce-broker run (`cluster: true`: per cluster run), and are
 * skipped (a stderr line, no `bench` line) when `redis-server` is not on the PATH.
 */
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { Child } from './child.js'
import {
  BROKER_KINDS, isLoadgenMessage,
  type BrokerKind, type LatencySummary, type LoadgenMessage, type LoadResult, type RegistrationCounters,
  type ReceiverStatsMessage, type ResultMessage, type StatsMessage, type WebhookCounters, type WindowedFigures
} from './protocol.js'
import { RedisServer, redisServerAvailable, type RedisCpuSample } from './redis-server.js'
import { SCENARIOS, type Scenario, type WindowedLoad } from './scenarios.js'
import { measureValidation } from './validation.js'
import { ReceiverProcess, ServerProcess } from './processes.js'

const LOADGEN_SCRIPT = new URL('./loadgen.js', import.meta.url)

/** Slack over twice warm-up + window (the load, then its backlog draining) for the loadgen to connect, report and exit, in ms. */
const LOADGEN_SLACK_MS = 20_000
/** Loadgen CPU share (1 = one core) above which it may be what limits the figures. */
const LOADGEN_CPU_WARNING = 0.8
/**
 * Webhook growth over the window, in seconds of the measured delivery rate, beyond which
 * deliveries are said to have fallen behind publishes (a balanced queue holds about what is in flight).
 */
const QUEUE_GROWTH_WARNING = 0.1

/** Knobs read once from the environment. */
interface Settings {
  readonly rounds: number
  readonly warmupMs: number
  readonly windowMs: number
  /** Scenario names to run; empty runs them all. */
  readonly only: readonly string[]
  /** `BENCH_BASELINE`: the server script of another built checkout, run as a side of every round. */
  readonly baseline: URL | undefined
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

/**
 * What a round measures, one after another: raw Aedes, one ce-broker node, for a
 * scenario with `cluster` two ce-broker nodes sharing a redis-server, and for one with
 * `registrations` a `quiet` ce-broker node (the same input, registering nothing). With
 * `BENCH_BASELINE`, also `baseline`: the other checkout's ce-broker, as this one's
 * last side (one node, or two for a cluster scenario).
 */
type Side = BrokerKind | 'cluster' | 'quiet' | 'baseline'

/** The sides of `scenario`'s rounds, in the order round 1 runs them. */
function sidesOf (scenario: Scenario, settings: Settings): readonly Side[] {
  const sides: Side[] = [...BROKER_KINDS]
  if (scenario.cluster === true) sides.push('cluster')
  if (scenario.registrations !== undefined) sides.push('quiet')
  if (settings.baseline !== undefined) sides.push('baseline')
  return sides
}

/** Whether `side` registers schema versions while loaded: the ce-broker side of a scenario with `registrations`. */
function registers (scenario: Scenario, side: Side): boolean {
  return side === 'ce-broker' && scenario.registrations !== undefined
}

/** The side the `bench` line's `ce-broker=` figure comes from, and the baseline is compared with. */
function mainSide (scenario: Scenario): Side {
  return scenario.cluster === true ? 'cluster' : 'ce-broker'
}

/** Whether `side` runs two nodes sharing a redis-server. */
function clustered (scenario: Scenario, side: Side): boolean {
  return side === 'cluster' || (side === 'baseline' && scenario.cluster === true)
}

/** Whether `side` runs one ce-broker node (this checkout's, registering or quiet, or the baseline's). */
function singleNode (scenario: Scenario, side: Side): boolean {
  return side === 'ce-broker' || side === 'quiet' || (side === 'baseline' && scenario.cluster !== true)
}

/** `BENCH_BASELINE`: a checkout built with `npm run build`, whose benchmark server is run as the baseline side. */
function baselineScript (dir: string | undefined): URL | undefined {
  if (dir === undefined || dir === '') return undefined
  const script = pathToFileURL(resolve(dir, 'dist', 'benchmarks', 'server.js'))
  if (!existsSync(script)) throw new Error(`BENCH_BASELINE=${dir} has no dist/benchmarks/server.js: run npm run build there first`)
  return script
}

/** One server process's share of a run. */
interface ServerFigures {
  /** `node A`, `node B` in a cluster run; empty for the one server of other runs. */
  readonly label: string
  /** Server CPU time over the loadgen's window divided by the server's wall time; 1 = one core. */
  readonly cpuShare: number
  readonly rssBytes: number
}

/** What one (scenario, side, round) run measured. */
interface RunFigures {
  readonly load: LoadResult
  /** The server processes: one, or node A (publishers) and node B (subscriber) of a cluster. */
  readonly servers: readonly ServerFigures[]
  /** redis-server's CPU time over the same window divided by the window's wall time; only when the run had one. */
  readonly redisCpuShare: number | undefined
  /** Only for a ce-broker run of a scenario with `receiver: true`. */
  readonly webhook: WebhookFigures | undefined
  /** Only for the registering side of a scenario with `registrations`. */
  readonly registrations: RegistrationFigures | undefined
}

/** The schema registrations of a registering run: the server's counters at both ends of the window, and once the load had ended. */
interface RegistrationFigures {
  readonly windowStart: RegistrationCounters
  readonly windowEnd: RegistrationCounters
  readonly final: RegistrationCounters
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
    only: (env.BENCH_ONLY ?? '').split(',').map((name) => name.trim()).filter((name) => name !== ''),
    baseline: baselineScript(env.BENCH_BASELINE)
  }
}

/** The warm-up of `scenario`'s runs: `BENCH_WARMUP_SECONDS`, or the scenario's `minWarmupMs` if longer. */
function warmupMs (scenario: Scenario, settings: Settings): number {
  return Math.max(settings.warmupMs, scenario.minWarmupMs ?? 0)
}

/**
 * Start `side` for `scenario`, put the scenario's load on it, stop it. A scenario with
 * `redis: true` gets an empty redis-server of its own for a ce-broker run, started
 * before the broker and stopped after it; raw Aedes stays the memory-only baseline.
 * Likewise a scenario with `receiver: true` gets a webhook receiver for a ce-broker run.
 * The cluster side always gets a redis-server, shared by its two nodes.
 */
async function measure (scenario: Scenario, side: Side, settings: Settings): Promise<RunFigures> {
  const redis = clustered(scenario, side) || (singleNode(scenario, side) && scenario.redis === true) ? await RedisServer.start() : undefined
  let receiver: ReceiverProcess | undefined
  let figures: RunFigures
  try {
    receiver = singleNode(scenario, side) && scenario.receiver === true ? await ReceiverProcess.start() : undefined
    figures = await measureServers(scenario, side, settings, redis, receiver)
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

/**
 * The server processes of one run: one of `side`'s kind, or for the cluster side node A
 * (publishers connect to it) and node B (the subscriber does), each with `node=` and
 * the shared Redis.
 */
function startServers (scenario: Scenario, side: Side, services: readonly string[], baseline: URL | undefined): ServerProcess[] {
  const script = side === 'baseline' ? baseline : undefined
  if (clustered(scenario, side)) {
    const prefix = side === 'baseline' ? 'baseline' : 'cluster'
    return ['a', 'b'].map((node) => new ServerProcess('ce-broker', scenario, [...services, `node=${node}`], `${prefix}-${node}`, script))
  }
  // the quiet side: the same node and input, told to register nothing
  const quiet = side === 'quiet' ? ['registrations=off'] : []
  return [new ServerProcess(side === 'aedes' ? 'aedes' : 'ce-broker', scenario, [...services, ...quiet], side, script)]
}

async function measureServers (scenario: Scenario, side: Side, settings: Settings, redis: RedisServer | undefined, receiver: ReceiverProcess | undefined): Promise<RunFigures> {
  const services = [...(redis === undefined ? [] : [`redis=${redis.url}`]), ...(receiver === undefined ? [] : [`receiver=${receiver.url}`])]
  const servers = startServers(scenario, side, services, settings.baseline)
  try {
    const ports = await Promise.all(servers.map(async (server) => await server.ready()))
    // publishers go to the first server (node A), subscribers to the last (node B; the same one outside a cluster), or to A with `subscriberOnIngress`
    const publisherPort = ports[0]
    const subscriberPort = scenario.subscriberOnIngress === true ? ports[0] : ports[ports.length - 1]
    if (publisherPort === undefined || subscriberPort === undefined) throw new Error('no server port')
    // the loadgen says when its window opens and closes; sample the servers (and Redis, and the
    // receiver) at both ends. A failed sample is kept as a value: if the loadgen fails too, its
    // error is the one to report
    const samples = servers.map((): Array<Promise<StatsMessage | Error>> => [])
    const redisSamples: Array<Promise<RedisCpuSample | Error>> = []
    const receiverSamples: Array<Promise<ReceiverStatsMessage | Error>> = []
    /** The loadgen's wall clock at the window's start and end: the paced load's events are picked by send stamp. */
    const windowAtMs: number[] = []
    const loadgen = new Child<LoadgenMessage>('loadgen', LOADGEN_SCRIPT,
      [scenario.name, String(publisherPort), String(subscriberPort), String(warmupMs(scenario, settings)), String(settings.windowMs)],
      isLoadgenMessage,
      function onLoadgenMessage (message) {
        if (message.type !== 'window') return
        windowAtMs.push(message.atMs)
        servers.forEach((server, i) => { samples[i]?.push(server.stats().catch(toError)) })
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
    const serverSamples = await Promise.all(samples.map(async (pair) => await Promise.all(pair)))
    const redisCpu = await Promise.all(redisSamples)
    // the webhook side is read before the broker stops: its final counters come from it
    const [first] = servers
    const webhook = receiver === undefined || first === undefined ? undefined : await webhookFigures(scenario, first, receiver, serverSamples[0] ?? [], await Promise.all(receiverSamples), windowAtMs)
    const registrations = registers(scenario, side) && first !== undefined ? registrationFigures(serverSamples[0] ?? [], await first.stats()) : undefined
    await Promise.all(servers.map(async (server) => { await server.stop() }))
    if (scenario.load.mode === 'paced' && (result.latency?.count ?? 0) === 0) throw new Error('the MQTT subscriber received no stamped event sent in the window')
    return {
      load: result,
      servers: serverSamples.map((pair, i) => serverFigures(clustered(scenario, side) ? `node ${i === 0 ? 'A' : 'B'}` : '', pair)),
      redisCpuShare: redis === undefined ? undefined : cpuShare(redisCpu),
      webhook,
      registrations
    }
  } finally {
    for (const server of servers) server.kill()
  }
}

/** A server's CPU share and RSS over the window, from its two samples; throws a failed sample's error. */
function serverFigures (label: string, samples: ReadonlyArray<StatsMessage | Error>): ServerFigures {
  const [start, end] = samples
  if (start instanceof Error) throw start
  if (end instanceof Error) throw end
  if (start === undefined || end === undefined) throw new Error(`loadgen sent ${samples.length} window messages, expected 2`)
  return { label, cpuShare: (end.cpuMicros - start.cpuMicros) / 1000 / (end.nowMs - start.nowMs), rssBytes: end.rssBytes }
}

/** A registering run's registration counters, from the server's samples at both ends of the window and its answer after the load. */
function registrationFigures (samples: ReadonlyArray<StatsMessage | Error>, final: StatsMessage): RegistrationFigures {
  const [start, end] = samples
  if (start instanceof Error) throw start
  if (end instanceof Error) throw end
  if (start?.registrations === undefined || end?.registrations === undefined || final.registrations === undefined) {
    throw new Error('the registering ce-broker server sent no registration counters')
  }
  return { windowStart: start.registrations, windowEnd: end.registrations, final: final.registrations }
}

/**
 * Fail a registering run that did not do what it measures: fewer versions created (201)
 * inside the window than (window / `everyMs`) − 1, or any registration of the run
 * answered otherwise. A benchmark that silently measures nothing is a defect.
 */
function checkRegistrations (scenario: Scenario, settings: Settings, label: string, figures: RegistrationFigures): void {
  const everyMs = scenario.registrations?.everyMs ?? Number.NaN
  const { windowStart, windowEnd, final } = figures
  const refused = Object.entries(final.otherwise)
  if (refused.length > 0) {
    throw new Error(`${label}: ${refused.reduce((sum, [, count]) => sum + count, 0)} of ${final.sent} schema registrations were not answered 201` +
      ` (${refused.map(([status, count]) => `${status} ×${count}`).join(', ')}); the first: ${final.firstProblem ?? '?'}`)
  }
  const least = Math.floor(settings.windowMs / everyMs) - 1
  const created = windowEnd.created - windowStart.created
  if (created < least) {
    throw new Error(`${label}: ${created} schema versions were registered (201) in the ${settings.windowMs} ms window, expected at least ${least}` +
      ` (one every ${everyMs} ms; ${final.skipped} ticks skipped while a registration was unanswered): the run did not measure registrations under load`)
  }
}

/** The stderr text of a registering run's registrations. */
function registrationText (figures: RegistrationFigures): string {
  const { windowStart: from, windowEnd: to, final } = figures
  return `registrations ${to.created - from.created} created (201) in the window (${to.sent - from.sent} sent), ${final.created} of ${final.sent} in the run` +
    `, ${final.skipped} ticks skipped, answered in mean ${final.answered === 0 ? '-' : (final.totalMs / final.answered).toFixed(1)} ms max ${final.maxMs.toFixed(1)} ms`
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

/**
 * The stderr text of a windowed load: the rate in each half of the window, how full each
 * bound was on average, and the end-to-end backlog at both ends of the window.
 */
function windowedText (figures: WindowedFigures, load: WindowedLoad): string {
  return `halves ${Math.round(figures.firstHalfPerSec)}/${Math.round(figures.secondHalfPerSec)} msgs/s` +
    `, unacked mean ${Math.round(figures.meanUnacked)} of ${load.publishers * load.window}` +
    `, unreceived mean ${Math.round(figures.meanUnreceived)} of ${load.maxUnreceived} (${figures.unreceivedAtStart} → ${figures.unreceivedAtEnd})`
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

/**
 * A windowed load's CPU cost per message: ` (<µs> µs/msg)` of a process that used `share`
 * of a core while the subscriber received the load's msgs/s; comparable across sides whose
 * processes share the machine's cores differently (a cluster run has two nodes and Redis).
 */
function perMessage (share: number, load: LoadResult): string {
  return load.windowed === undefined || load.msgsPerSec === 0 ? '' : ` (${(share * 1e6 / load.msgsPerSec).toFixed(1)} µs/msg)`
}

function percent (share: number): string {
  return `${(share * 100).toFixed(0)}%`
}

/** A stderr line; detail lines must never start with `bench `, which marks result lines. */
function detail (line: string): void {
  process.stderr.write(`${line}\n`)
}

async function runScenario (scenario: Scenario, settings: Settings): Promise<void> {
  if (scenario.cluster === true && (scenario.redis === true || scenario.receiver === true)) {
    throw new Error(`${scenario.name}: a cluster scenario compares with one embedded node, without a receiver: drop redis and receiver`)
  }
  if (scenario.cluster === true && scenario.registrations !== undefined) {
    throw new Error(`${scenario.name}: registrations compare one node with a quiet one: not with cluster`)
  }
  const sides = sidesOf(scenario, settings)
  const figures = new Map<Side, RunFigures[]>(sides.map((side) => [side, []]))
  if (warmupMs(scenario, settings) !== settings.warmupMs) detail(`${scenario.name} warms up for ${warmupMs(scenario, settings)} ms (its minimum), not ${settings.warmupMs} ms`)
  for (let round = 0; round < settings.rounds; round++) {
    // alternate (aedes, ce, ce, aedes, ...) so drift in machine load hits every side alike
    const order = round % 2 === 0 ? sides : [...sides].reverse()
    for (const side of order) {
      const run = await measure(scenario, side, settings)
      figures.get(side)?.push(run)
      const { load } = run
      const label = `${scenario.name} round ${round + 1}/${settings.rounds} ${side.padEnd(9)}`
      detail(`${label} ${Math.round(load.msgsPerSec)} msgs/s` +
        ` (offered ${Math.round(load.offeredPerSec)}/s, ${(load.bytesPerSec / 1e6).toFixed(1)} MB/s in)` +
        (load.latency === undefined ? '' : ` | publish → mqtt ${latencyText(load.latency)}`) +
        ` | loadgen cpu ${percent(load.cpuShare)} elu ${percent(load.eventLoopUtilization)}` +
        run.servers.map((server) => ` | server ${server.label === '' ? '' : `${server.label} `}cpu ${percent(server.cpuShare)}${perMessage(server.cpuShare, load)} rss ${(server.rssBytes / 2 ** 20).toFixed(0)} MiB`).join('') +
        (run.redisCpuShare === undefined ? '' : ` | redis cpu ${percent(run.redisCpuShare)}${perMessage(run.redisCpuShare, load)}`) +
        (load.windowed === undefined || scenario.load.mode !== 'fanin-qos1-windowed' ? '' : ` | ${windowedText(load.windowed, scenario.load)}`) +
        ` | backlog ${load.backlogMessages} msgs in ${Math.round(load.drainMs)} ms, undelivered ${load.undelivered}` +
        (run.registrations === undefined ? '' : ` | ${registrationText(run.registrations)}`))
      if (run.webhook !== undefined) detail(webhookDetail(label, run, run.webhook))
      if (run.registrations !== undefined) checkRegistrations(scenario, settings, label.trimEnd(), run.registrations)
    }
  }

  const of = (side: Side): readonly RunFigures[] => figures.get(side) ?? []
  const figure = (side: Side): number => median(of(side).map((r) => figureOf(scenario, r)))
  const all = [...figures.values()].flat()
  const loadgenCpu = all.map((r) => r.load.cpuShare)
  const redisCpu = all.flatMap((r) => r.redisCpuShare === undefined ? [] : [r.redisCpuShare])
  /** Median CPU share of the `index`th server of `side`'s runs. */
  const serverCpu = (side: Side, index = 0): string => percent(median(of(side).map((r) => r.servers[index]?.cpuShare ?? Number.NaN)))
  detail(`${scenario.name} medians over ${settings.rounds} rounds of ${settings.windowMs} ms:` +
    ` loadgen cpu ${percent(median(loadgenCpu))} (max ${percent(Math.max(...loadgenCpu))}),` +
    ` server cpu ce-broker ${serverCpu('ce-broker')}` +
    ` aedes ${serverCpu('aedes')}` +
    (scenario.cluster === true ? ` cluster node A ${serverCpu('cluster', 0)} node B ${serverCpu('cluster', 1)}` : '') +
    (scenario.registrations === undefined ? '' : ` quiet ${serverCpu('quiet')}`) +
    (settings.baseline === undefined ? '' : ` baseline ${serverCpu('baseline')}`) +
    (redisCpu.length === 0 ? '' : `, redis cpu (${scenario.cluster === true ? 'cluster' : 'ce-broker'} runs) ${percent(median(redisCpu))}`))
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
  // A ratio is the median of each round's own ratio: a round measures every side back to
  // back, so a machine that slows down for a while slows all sides of that round alike.
  const ratios = (over: Side, under: Side): number[] => {
    const overRuns = of(over)
    return of(under).map((run, i) => {
      const overRun = overRuns[i]
      return overRun === undefined ? 0 : figureOf(scenario, overRun) / figureOf(scenario, run)
    })
  }
  const text = (values: readonly number[]): string => values.map((r) => r.toFixed(3)).join(' ')
  // with a baseline: this checkout against it, round by round, and the baseline's own ratio to aedes
  let vsBaseline = ''
  if (settings.baseline !== undefined) {
    const perRound = ratios(mainSide(scenario), 'baseline')
    detail(`${scenario.name} per-round ratios against the baseline: ${text(perRound)}; baseline/aedes ${text(ratios('baseline', 'aedes'))}`)
    vsBaseline = ` baseline=${formatFigure(scenario, figure('baseline'))} vs-baseline=${median(perRound).toFixed(3)} baseline-ratio=${median(ratios('baseline', 'aedes')).toFixed(3)}`
  }
  if (scenario.registrations !== undefined) {
    // `ce-broker=` registers while loaded, `quiet=` is the same node registering nothing
    const toAedes = ratios('ce-broker', 'aedes')
    const toQuiet = ratios('ce-broker', 'quiet')
    detail(`${scenario.name} per-round ratios: ce-broker/aedes ${text(toAedes)}, ce-broker/quiet ${text(toQuiet)}, quiet/aedes ${text(ratios('quiet', 'aedes'))}`)
    detail(`${scenario.name} versions registered (201) in the window per round: ${of('ce-broker').map((r) => r.registrations === undefined ? '?' : String(r.registrations.windowEnd.created - r.registrations.windowStart.created)).join(' ')}` +
      `; in the run: ${of('ce-broker').map((r) => String(r.registrations?.final.created ?? '?')).join(' ')}`)
    process.stdout.write(`bench ${scenario.name} ce-broker=${formatFigure(scenario, figure('ce-broker'))} aedes=${formatFigure(scenario, figure('aedes'))}` +
      ` ratio=${median(toAedes).toFixed(3)} quiet=${formatFigure(scenario, figure('quiet'))} vs-quiet=${median(toQuiet).toFixed(3)}${vsBaseline}\n`)
    return
  }
  if (scenario.cluster !== true) {
    const perRound = ratios('ce-broker', 'aedes')
    detail(`${scenario.name} per-round ratios: ${text(perRound)}`)
    process.stdout.write(`bench ${scenario.name} ce-broker=${formatFigure(scenario, figure('ce-broker'))} aedes=${formatFigure(scenario, figure('aedes'))} ratio=${median(perRound).toFixed(3)}${vsBaseline}\n`)
    return
  }
  // a cluster scenario: `ce-broker=` is the two-node cluster, `single=` one embedded node
  const clusterToAedes = ratios('cluster', 'aedes')
  const clusterToSingle = ratios('cluster', 'ce-broker')
  detail(`${scenario.name} per-round ratios: cluster/aedes ${text(clusterToAedes)}, cluster/single ${text(clusterToSingle)}, single/aedes ${text(ratios('ce-broker', 'aedes'))}`)
  process.stdout.write(`bench ${scenario.name} ce-broker=${formatFigure(scenario, figure('cluster'))} aedes=${formatFigure(scenario, figure('aedes'))}` +
    ` ratio=${median(clusterToAedes).toFixed(3)} single=${formatFigure(scenario, figure('ce-broker'))} vs-single=${median(clusterToSingle).toFixed(3)}${vsBaseline}\n`)
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
    if ((scenario.redis === true || scenario.cluster === true) && !(redisAvailable ??= redisServerAvailable())) {
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
