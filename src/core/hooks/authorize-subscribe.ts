import type { AedesOptions } from 'aedes'
import { toBrokerError } from '../errors.js'
import type { Logger } from '../logger.js'
import type { LogSampler } from '../log-sampler.js'
import type { AuthorizeSubscribeHandler, SubscribeAttempt } from '../context.js'
import type { Connections } from '../transport/connections.js'
import type { CoreMetrics } from '../metrics.js'
import { settleChain } from '../pipeline/chain.js'
import { SubscriptionQuota } from '../pipeline/subscription-quota.js'
import { topicOverLimit, type TopicLimits } from '../pipeline/topic-limits.js'
import { unreadable } from '../reserved-topics.js'
import { parseShared } from '../shared/syntax.js'

/** The limits of `limits` a subscription must keep. */
export interface SubscribeLimits extends TopicLimits {
  readonly maxSubscriptionsPerClient: number
  readonly maxSharedGroups: number
}

export interface SubscribeDeps {
  readonly chain: readonly AuthorizeSubscribeHandler[]
  readonly connections: Connections
  readonly limits: SubscribeLimits
  readonly metrics: CoreMetrics
  readonly log: Logger
  /** Samples the refusal lines per client, shared with the other hooks. */
  readonly sampler: LogSampler
  /** Whether a member may join the group `group` of `filter`: one that exists, or room for a new one (`limits.maxSharedGroups`). */
  readonly sharedGroupAdmits: (group: string, filter: string, max: number) => boolean
}

type AedesAuthorizeSubscribe = NonNullable<AedesOptions['authorizeSubscribe']>

/** aedes' slot, and what the node calls once aedes holds a SUBSCRIBE's filters (its 'subscribe' event). */
export interface SubscribeGate {
  readonly hook: AedesAuthorizeSubscribe
  readonly settled: (client: { readonly id: string }) => void
}

/**
 * Fold the authorizeSubscribe chain into aedes' slot. A refusal is SUBACK 0x80
 * for that filter and the client stays connected (aedes reads a `null`
 * subscription that way); an error given to aedes would disconnect it.
 */
export function adaptAuthorizeSubscribe (deps: SubscribeDeps): SubscribeGate {
  const { chain, connections, limits, metrics, log } = deps
  const quota = new SubscriptionQuota(limits.maxSubscriptionsPerClient)
  const refusals = new RefusalTally(log, deps.sampler)

  /** The limit `topic` breaks for `client`, or `undefined`: counted, as every bound is. `filter` is what the topic limits judge. */
  function overLimit (client: object, topic: string, filter: string): string | undefined {
    // aedes would close the client over a filter with too many levels; SUBACK 0x80 is the kinder answer
    const limit = topicOverLimit(filter, limits)?.limit ?? (quota.admit(client, topic) ? undefined : 'subscriptions')
    if (limit !== undefined) metrics.limitHit(limit)
    return limit
  }

  /**
   * Why `topic` is refused before the chain, or `undefined`. A shared subscription
   * `$share/<group>/<filter>` is judged by its filter (the limits, the reserved topics and
   * the chain's ACL): `$share` never widens what a client may read.
   */
  function refusalOf (client: { readonly id: string }, topic: string): string | undefined {
    const shared = parseShared(topic)
    if (shared === 'invalid_shared_group') {
      metrics.limitHit('shared_group_name')
      return shared
    }
    const filter = shared?.filter ?? topic
    const refusal = overLimit(client, topic, filter) ?? unreadable(filter, client.id)
    if (refusal !== undefined || shared === undefined || deps.sharedGroupAdmits(shared.group, shared.filter, limits.maxSharedGroups)) return refusal
    metrics.limitHit('shared_groups')
    return 'shared_groups'
  }

  const hook: AedesAuthorizeSubscribe = function authorizeSubscribe (client, sub, callback) {
    const refusal = refusalOf(client, sub.topic)
    if (refusal !== undefined) {
      refusals.add(client, sub.topic, refusal)
      callback(null, null)
      return
    }
    if (chain.length === 0) {
      callback(null, sub)
      return
    }
    const filter = parseShared(sub.topic)
    const topic = typeof filter === 'object' ? filter.filter : sub.topic
    const attempt: SubscribeAttempt = {
      clientId: client.id,
      identity: connections.metaOf(client)?.identity,
      topic,
      qos: sub.qos,
      log: log.child({ clientId: client.id, topic: sub.topic })
    }
    settleChain(chain, attempt, function subscribeAllowed () { callback(null, sub) }, function subscribeRefused (raw: unknown) {
      refusals.add(client, sub.topic, toBrokerError(raw).code)
      callback(null, null)
    })
  }

  // aedes holds the packet's filters now: what was approved for it no longer waits, what was refused is told
  function settled (client: { readonly id: string }): void {
    quota.settled(client)
    refusals.tell(client)
  }
  return { hook, settled }
}

/** A SUBSCRIBE's refused filters, told in one sampled line once aedes has them all: never a line per filter. */
class RefusalTally {
  readonly #log: Logger
  readonly #sampler: LogSampler
  readonly #tallies = new WeakMap<object, { count: number, first: string, reasons: Map<string, number> }>()

  constructor (log: Logger, sampler: LogSampler) {
    this.#log = log
    this.#sampler = sampler
  }

  add (client: object, topic: string, reason: string): void {
    const tally = this.#tallies.get(client) ?? { count: 0, first: topic.slice(0, 64), reasons: new Map<string, number>() }
    tally.count++
    tally.reasons.set(reason, (tally.reasons.get(reason) ?? 0) + 1)
    this.#tallies.set(client, tally)
  }

  tell (client: { readonly id: string }): void {
    const tally = this.#tallies.get(client)
    if (tally === undefined) return
    this.#tallies.delete(client)
    const suppressed = this.#sampler.take(`client ${client.id}`)
    if (suppressed === undefined) return
    this.#log.warn({ clientId: client.id, refused: tally.count, firstTopic: tally.first, reasons: Object.fromEntries(tally.reasons), ...(suppressed === 0 ? {} : { suppressed }) }, 'subscriptions refused (SUBACK 0x80)')
  }
}
