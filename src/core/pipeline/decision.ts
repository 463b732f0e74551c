import type { PublishPacket } from 'aedes'
import { LimitExceededError, ReservedTopicError, toBrokerError, type BrokerError } from '../errors.js'
import type { AuthorizePublishHandler } from '../context.js'
import type { CoreMetrics } from '../metrics.js'
import { isReserved } from '../reserved-topics.js'
import type { Attempt } from './attempt.js'
import { settleChain } from './chain.js'
import type { Refusals } from './refusal.js'
import { topicOverLimit, type TopicLimits } from './topic-limits.js'

export interface DecisionDeps {
  readonly chain: readonly AuthorizePublishHandler[]
  readonly limits: TopicLimits
  readonly metrics: CoreMetrics
  readonly refusals: Refusals
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
  const { chain, limits, metrics, refusals } = deps

  return function decide (packet, attempt, done) {
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
      done(undefined)
      return
    }
    settleChain(chain, attempt, function allowed () {
      if (attempt.event !== undefined) metrics.event('accepted')
      refusals.announce(attempt, undefined)
      done(undefined)
    }, function refused (raw: unknown) {
      refusals.refuse(packet, attempt, toBrokerError(raw), done)
    })
  }
}
