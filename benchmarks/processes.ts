/**
 * The long-lived children `run.js` drives during a run, over IPC (`protocol.ts`): a
 * broker server (`server.js`) and the webhook receiver (`receiver.js`).
 */
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { Child } from './child.js'
import {
  isReceiverMessage, isServerMessage, RECEIVER_PATH,
  type BrokerKind, type LatencyMessage, type LatencySummary, type ReadyMessage, type ReceiverMessage,
  type ReceiverStatsMessage, type ServerMessage, type StatsMessage
} from './protocol.js'
import type { Scenario } from './scenarios.js'

const SERVER_SCRIPT = new URL('./server.js', import.meta.url)
const RECEIVER_SCRIPT = new URL('./receiver.js', import.meta.url)

/** Longest a broker may take to report its port, in ms. */
const SERVER_START_TIMEOUT_MS = 20_000
/** Longest a broker may take to close and exit after SIGTERM, in ms. */
const SERVER_STOP_TIMEOUT_MS = 10_000
/** Longest a server may take to answer a stats request, in ms (its event loop is saturated while loaded). */
const STATS_TIMEOUT_MS = 5_000
/** Longest the webhook receiver may take to report its port, and to exit after SIGTERM, in ms. */
const RECEIVER_TIMEOUT_MS = 10_000
/** Paced load: the webhook deliveries count as all arrived once none arrived for this long, in ms. */
const SETTLE_QUIET_MS = 300
const SETTLE_POLL_MS = 20
/** Paced load: longest the webhook deliveries may take to arrive after the load ended, in ms. */
const SETTLE_TIMEOUT_MS = 15_000

/** A server child: started, asked for its CPU and memory, stopped. */
export class ServerProcess {
  readonly #child: Child<ServerMessage>

  /**
   * @param services `redis=<url>`, `receiver=<url>`, `node=<a|b>`: what run.js started for this run, and
   *   which cluster node this is, passed on to server.js
   * @param name how logs and profile files name it: `aedes`, `ce-broker`, `cluster-a`, `baseline`, ...
   * @param script the server script to run: this checkout's `server.js`, or a baseline's (`BENCH_BASELINE`)
   */
  constructor (kind: BrokerKind, scenario: Scenario, services: readonly string[], name: string = kind, script: URL = SERVER_SCRIPT) {
    // BENCH_PROFILE_DIR: each server writes a V8 CPU profile there when it exits
    const profileDir = process.env.BENCH_PROFILE_DIR
    const execArgv = profileDir === undefined || profileDir === '' ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${scenario.name}-${name}-${Date.now()}.cpuprofile`]
    this.#child = new Child(`server ${name}`, script, [kind, scenario.name, ...services], isServerMessage, undefined, execArgv)
  }

  async ready (): Promise<number> {
    const isReady = (m: ServerMessage): m is ReadyMessage => m.type === 'ready'
    return (await this.#child.next(isReady, SERVER_START_TIMEOUT_MS)).port
  }

  async stats (): Promise<StatsMessage> {
    return await this.#child.ask({ type: 'stats' }, (m): m is StatsMessage => m.type === 'stats', STATS_TIMEOUT_MS)
  }

  async stop (): Promise<void> { await this.#child.stop(SERVER_STOP_TIMEOUT_MS) }
  kill (): void { this.#child.kill() }
}

/**
 * The webhook receiver child (`receiver.js`): started before the broker, so that its URL
 * can go into the broker's config; asked for its counters and for latency percentiles;
 * stopped after the broker.
 */
export class ReceiverProcess {
  /** `http://127.0.0.1:<port>/webhook`, for `receiverUrl()`. */
  readonly url: string
  readonly #child: Child<ReceiverMessage>

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
    return await this.#child.ask({ type: 'stats' }, (m): m is ReceiverStatsMessage => m.type === 'stats', STATS_TIMEOUT_MS)
  }

  /** Percentiles of the requests whose send stamp is in [`fromMs`, `toMs`) (wall clock). */
  async latency (fromMs: number, toMs: number): Promise<LatencySummary> {
    return (await this.#child.ask({ type: 'latency', fromMs, toMs }, (m): m is LatencyMessage => m.type === 'latency', STATS_TIMEOUT_MS)).summary
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
