import type { PublishPacket } from 'aedes'
import { LimitExceededError, ReservedTopicError, UnavailableError, toBrokerError, type BrokerError } from '../errors.js'
import type { AuthorizePublishHandler } from '../context.js'
import type { CoreMetrics } from '../metrics.js'
import { isReserved } from '../reserved-topics.js'
import type { Attempt } from './attempt.js'
import type { Commit } from './commit.js'
import { settleChain } from './chain.js'
import type { Refusals } from './refusal.js'
import { topicOverLimit, type TopicLimits } from './topic-limits.js'
import type { Tracing } from '../tracing/index.js'

export interface DecisionDeps {
  readonly chain: readonly AuthorizePublishHandler[]
  readonly limits: TopicLimits
  readonly metrics: CoreMetrics
  readonly refusals: Refusals
  /** With `--redis`: accepted events are committed (claimed, journaled, routed) before they are acknowledged. */
  readonly commit: Commit | undefined
  /** With `tracing.otlpUrl`: told where each publish comes in. */
  readonly tracing: Tracing | undefined
}

/**
 * Decide a publish: `done` gets `undefined` when it is accepted, or the refusal, after
 * which a diverted `packet` has been rewritten (`dead-letter`, `discard`) and a
 * rejected one goes nowhere (`reject`).
 */
export type Decide = (packet: PublishPacket, attempt: Attempt, done: (err: BrokerError | undefined) => void) => void

/**
 * The publish decision, in order: the topic limits (a topic over one disconnects its
 * client, nothing else is done), the reserved `$` topics (aedes guards `$SYS/` only;
 * every `$` topic is the broker's: acked, delivered to no one, told), then the
 * authorizePublish chain, whose first refusal decides by its error's disposition.
 */
export function createDecision (deps: DecisionDeps): Decide {
  const { chain, limits, metrics, refusals, commit, tracing } = deps

  function accept (attempt: Attempt): void {
    if (attempt.event !== undefined) metrics.event('accepted')
    refusals.announce(attempt, undefined)
  }

  /** Claim and journal the accepted event (when claimed), and route it before `done` (when it will be acked). */
  function committed (committer: Commit, packet: PublishPacket, attempt: Attempt, done: (err: BrokerError | undefined) => void): void {
    if (!committer.journaled(attempt)) {
      accept(attempt)
      routed(committer, packet, attempt, undefined, done)
      return
    }
    committer.append(attempt, function appended (err, result) {
      if (err !== undefined || result === undefined) {
        done(err ?? new UnavailableError('the commit answered nothing'))
        return
      }
      if (result.duplicate) {
        refusals.refuse(packet, attempt, attempt.claimed?.taken() ?? new UnavailableError('claim taken'), done)
        return
      }
      accept(attempt)
      // QoS 0 over MQTT: claimed, and routed by aedes as it is never acked
      if (result.entry === undefined) done(undefined)
      else routed(committer, packet, attempt, result.entry, done)
    })
  }

  function routed (committer: Commit, packet: PublishPacket, attempt: Attempt, entry: string | undefined, done: (err: BrokerError | undefined) => void): void {
    committer.finish(packet, attempt, entry, (err?: unknown) => {
      if (err === undefined) {
        done(undefined)
        return
      }
      // not acked: the publisher sends it again (and the journal's sweep routes a journaled copy)
      done(new UnavailableError(`the event could not be routed: ${err instanceof Error ? err.message : String(err)}; it was not acked`, { cause: err }))
    })
  }

  return function decide (packet, attempt, done) {
    attempt.commits = commit !== undefined
    // the one thing tracing costs when it is off
    if (tracing !== undefined) tracing.begin(packet, attempt)
    const topic = packet.topic
    const over = topicOverLimit(topic, limits)
    if (over !== undefined) {
      metrics.limitHit(over.limit)
      const tooLong = new LimitExceededError(over.limit, over.detail)
      refusals.log(attempt, tooLong, 'publish refused')
      done(tooLong)
      return
    }
    if (isReserved(topic)) {
      refusals.refuse(packet, attempt, new ReservedTopicError(topic), done)
      return
    }
    if (chain.length === 0) {
      if (commit?.needed(attempt) === true) committed(commit, packet, attempt, done)
      else done(undefined)
      return
    }
    settleChain(chain, attempt, function allowed () {
      if (commit?.needed(attempt) === true) {
        committed(commit, packet, attempt, done)
        return
      }
      accept(attempt)
      done(undefined)
    }, function refused (raw: unknown) {
      refusals.refuse(packet, attempt, toBrokerError(raw), done)
    })
  }
}
