/**
 * The publish pipeline: every publish, a client's (through aedes' authorizePublish)
 * or the broker's own (HTTP, replay, `broker.publish`), is decided here: topic limits,
 * reserved topics, the authorizePublish chain, then what becomes of a refusal.
 */
import type { Client, PublishPacket } from 'aedes'
import type { Journal, JournalPacket } from '../cluster/journal.js'
import { EventRejectedError, type BrokerError } from '../errors.js'
import type { Logger } from '../logger.js'
import type { CoreMetrics } from '../metrics.js'
import type { AuthorizePublishHandler, Origin } from '../context.js'
import { isReserved } from '../reserved-topics.js'
import { Attempt, payloadOf } from './attempt.js'
import { Commit, type Route } from './commit.js'
import { createDecision, type Decide } from './decision.js'
import { createOutageHold, type OutageHold, type OutageHoldOptions } from './outage-hold.js'
import { createRefusals, type RefusalDeps } from './refusal.js'
import { mayBeOverLimit, type TopicLimits } from './topic-limits.js'

export { Attempt, payloadOf } from './attempt.js'
export type { Decide } from './decision.js'
export type { OutageHold } from './outage-hold.js'

export interface PipelineDeps extends RefusalDeps, TopicLimits, Omit<OutageHoldOptions, 'log'> {
  readonly chain: readonly AuthorizePublishHandler[]
  /** Whether every handler of `chain` is idle now (none, or each one's `idle` says so). */
  readonly chainIdle: () => boolean
  readonly metrics: CoreMetrics
  readonly log: Logger
  /** With `--redis`, the node's journal: accepted events are committed there before they are acknowledged. */
  readonly journal: Journal | undefined
  /** Route an accepted packet (aedes' publish), as `client`'s. */
  readonly route: Route
}

/** Who a broker-side publish is made for. */
export interface CheckOptions {
  readonly origin: Origin
  readonly clientId?: string | null
  /** Dead-letter id when this publish replays a dead letter. */
  readonly replayOf?: string
}

export interface PublishPipeline {
  /** Whether a publish needs no decision: no handler to ask, nothing to route before an ack (embedded, or QoS 0), not reserved, too short to be over a limit. */
  readonly unchecked: (topic: string, qos: 0 | 1 | 2) => boolean
  readonly decide: Decide
  /** Where a client's publish waits while Redis is unreachable. */
  readonly outage: OutageHold
  /**
   * Decide a broker-side publish. Resolves `undefined` when accepted, or the refusal:
   * then `packet` has been diverted (`dead-letter`, `discard`) or goes nowhere (`reject`).
   */
  readonly check: (packet: PublishPacket, options: CheckOptions) => Promise<BrokerError | undefined>
  /**
   * Dead-letter what was refused before the chain could run (an HTTP body that is
   * not even JSON): the record is kept and published on `$DLQ/<topic>`.
   */
  readonly keep: (packet: PublishPacket, error: BrokerError, options: CheckOptions) => void
  /**
   * Count and announce a publish refused for its size before its payload was read
   * (the transport guard, the HTTP body limit): nothing to keep, but it is audited.
   */
  readonly tooLarge: (topic: string, payloadBytes: number, limit: number, options: CheckOptions & { readonly qos?: 0 | 1 | 2 }) => void
  /**
   * Route an event again from a journal: accepted and claimed before, so no check; the
   * `decided` handlers are told (its audit entry), then it is routed. Resolves once done.
   */
  readonly replay: (packet: JournalPacket) => Promise<void>
}

export function createPublishPipeline (deps: PipelineDeps): PublishPipeline {
  const { chain, metrics, log } = deps
  const refusals = createRefusals(deps)
  const commit = deps.journal === undefined ? undefined : new Commit({ journal: deps.journal, route: deps.route })
  const decide = createDecision({ chain, limits: deps, metrics, refusals, commit, tracing: deps.tracing })
  const outage = createOutageHold({ ...deps, log })

  function unchecked (topic: string, qos: 0 | 1 | 2): boolean {
    return (chain.length === 0 || deps.chainIdle()) && (commit === undefined || qos === 0) && !isReserved(topic) && !mayBeOverLimit(topic, deps)
  }

  function attemptOf (packet: PublishPacket, options: CheckOptions): Attempt {
    return new Attempt(packet.topic, payloadOf(packet), packet.qos, packet.retain, options.clientId ?? null, undefined, options.origin, log, options.replayOf)
  }

  async function check (packet: PublishPacket, options: CheckOptions): Promise<BrokerError | undefined> {
    metrics.publishReceived(options.origin)
    if (!outage.available()) return outage.refusal()
    const attempt = attemptOf(packet, options)
    return await new Promise((resolve) => { decide(packet, attempt, resolve) })
  }

  function keep (packet: PublishPacket, error: BrokerError, options: CheckOptions): void {
    refusals.keep(attemptOf(packet, options), error)
  }

  function tooLarge (topic: string, payloadBytes: number, limit: number, options: CheckOptions & { readonly qos?: 0 | 1 | 2 }): void {
    const err = new EventRejectedError('payload_too_large', topic, [{ path: '', message: `payload of ${payloadBytes} bytes is over the limit of ${limit}` }], 'disconnect')
    refusals.note(new Attempt(topic, EMPTY, options.qos ?? 0, false, options.clientId ?? null, undefined, options.origin, log, undefined), err)
  }

  async function replay (entry: JournalPacket): Promise<void> {
    const packet: PublishPacket = { cmd: 'publish', topic: entry.topic, payload: entry.payload, qos: entry.qos, retain: entry.retain, dup: false }
    const attempt = new Attempt(entry.topic, entry.payload, entry.qos, entry.retain, entry.clientId, undefined, 'internal', log, undefined)
    if (entry.event !== undefined) attempt.describe(entry.event)
    attempt.commits = true
    refusals.announce(attempt, undefined)
    await new Promise<void>((resolve, reject) => { deps.route(packet, null, (err) => { if (err === undefined || err === null) resolve(); else reject(err) }) })
    if (attempt.kept !== undefined) await Promise.all(attempt.kept)
  }

  return { unchecked, decide, outage, check, keep, tooLarge, replay }
}

const EMPTY = Buffer.alloc(0)
