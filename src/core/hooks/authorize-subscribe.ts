import type { AedesOptions } from 'aedes'
import { toBrokerError } from '../errors.js'
import type { Logger } from '../logger.js'
import type { LogSampler } from '../log-sampler.js'
import type { AuthorizeSubscribeHandler, SubscribeAttempt } from '../context.js'
import type { Connections } from '../transport/connections.js'
import type { CoreMetrics } from '../metrics.js'
import { settleChain } from '../pipeline/chain.js'
import { topicOverLimit, type TopicLimits } from '../pipeline/topic-limits.js'
import { DISCARD_PREFIX, REJECTIONS_PREFIX, isOwnRejections } from '../reserved-topics.js'

/** The limits of `limits` a subscription must keep. */
export interface SubscribeLimits extends TopicLimits {
  readonly maxSubscriptionsPerClient: number
}

type AedesAuthorizeSubscribe = NonNullable<AedesOptions['authorizeSubscribe']>

/**
 * Fold the authorizeSubscribe chain into aedes' slot. A refusal is SUBACK 0x80
 * for that filter and the client stays connected (aedes reads a `null`
 * subscription that way); an error given to aedes would disconnect it.
 */
export function adaptAuthorizeSubscribe (
  chain: readonly AuthorizeSubscribeHandler[],
  connections: Connections,
  limits: SubscribeLimits,
  metrics: CoreMetrics,
  log: Logger,
  sampler: LogSampler
): AedesAuthorizeSubscribe & { settled?: (client: { readonly id: string }) => void } {
  /**
   * Filters approved but not yet held: aedes checks every filter of a SUBSCRIBE before
   * it stores any, so those of the same packet count too. A packet's are dropped from
   * here once aedes holds them (its 'subscribe' event) or the client is gone.
   */
  const approved = new WeakMap<object, Set<string>>()

  /** The limit `sub` breaks for `client`, or `undefined`. */
  function overLimit (client: Parameters<AedesAuthorizeSubscribe>[0], topic: string): string | undefined {
    // aedes would close the client over a filter with too many levels; SUBACK 0x80 is the kinder answer
    const over = topicOverLimit(topic, limits)
    if (over !== undefined) return over.limit
    // aedes keeps a client's subscriptions by filter; subscribing to one it holds replaces it
    const held: unknown = Reflect.get(client, 'subscriptions')
    const holds = typeof held === 'object' && held !== null ? held : {}
    const waiting = approved.get(client) ?? new Set<string>()
    if (Object.hasOwn(holds, topic) || waiting.has(topic)) return undefined
    let count = Object.keys(holds).length
    for (const filter of waiting) if (!Object.hasOwn(holds, filter)) count++
    if (count >= limits.maxSubscriptionsPerClient) return 'subscriptions'
    waiting.add(topic)
    approved.set(client, waiting)
    return undefined
  }

  /** This SUBSCRIBE's refused filters, told in one line once aedes has them all: never a line per filter. */
  const refusals = new WeakMap<object, { count: number, first: string, reasons: Map<string, number> }>()
  function refused (client: Parameters<AedesAuthorizeSubscribe>[0], topic: string, reason: string): void {
    const tally = refusals.get(client) ?? { count: 0, first: topic.slice(0, 64), reasons: new Map<string, number>() }
    tally.count++
    tally.reasons.set(reason, (tally.reasons.get(reason) ?? 0) + 1)
    refusals.set(client, tally)
  }
  function tell (client: { readonly id: string }): void {
    const tally = refusals.get(client)
    if (tally === undefined) return
    refusals.delete(client)
    const suppressed = sampler.take(`client ${client.id}`)
    if (suppressed === undefined) return
    log.warn({ clientId: client.id, refused: tally.count, firstTopic: tally.first, reasons: Object.fromEntries(tally.reasons), ...(suppressed === 0 ? {} : { suppressed }) }, 'subscriptions refused (SUBACK 0x80)')
  }

  const authorizeSubscribe: AedesAuthorizeSubscribe & { settled?: (client: { readonly id: string }) => void } = function authorizeSubscribe (client, sub, callback) {
    const limit = overLimit(client, sub.topic)
    if (limit !== undefined) {
      metrics.limitHit(limit)
      refused(client, sub.topic, limit)
      callback(null, null)
      return
    }
    if (sub.topic.startsWith(DISCARD_PREFIX)) {
      // discarded messages are not readable
      refused(client, sub.topic, 'discarded')
      callback(null, null)
      return
    }
    // a client reads its own rejections and no one else's; wildcards would read others'
    if (sub.topic.startsWith(REJECTIONS_PREFIX) && !isOwnRejections(sub.topic, client.id)) {
      refused(client, sub.topic, 'others_rejections')
      callback(null, null)
      return
    }
    if (chain.length === 0) {
      callback(null, sub)
      return
    }
    const attempt: SubscribeAttempt = {
      clientId: client.id,
      identity: connections.metaOf(client)?.identity,
      topic: sub.topic,
      qos: sub.qos,
      log: log.child({ clientId: client.id, topic: sub.topic })
    }
    settleChain(chain, attempt, function subscribeAllowed () { callback(null, sub) }, function subscribeRefused (raw: unknown) {
      const err = toBrokerError(raw)
      refused(client, sub.topic, err.code)
      callback(null, null)
    })
  }
  // aedes holds the packet's filters now: what was approved for it no longer waits, what was refused is told
  authorizeSubscribe.settled = (client) => {
    approved.delete(client)
    tell(client)
  }
  return authorizeSubscribe
}
