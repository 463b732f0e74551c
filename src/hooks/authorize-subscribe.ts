import type { AedesOptions } from 'aedes'
import { toBrokerError } from '../errors.js'
import type { Logger } from '../logger.js'
import type { AuthorizeSubscribeHandler, SubscribeAttempt } from '../context.js'
import type { Connections } from '../transport/connections.js'
import { settleChain } from './chain.js'
import { DIVERT_PREFIX } from './authorize-publish.js'

type AedesAuthorizeSubscribe = NonNullable<AedesOptions['authorizeSubscribe']>

/** Where a client finds the dead-letter records of its own refused publishes: `$rejections/<clientId>`. */
export const REJECTIONS_PREFIX = '$rejections/'

/**
 * Fold the authorizeSubscribe chain into aedes' slot. A refusal is SUBACK 0x80
 * for that filter and the client stays connected (aedes reads a `null`
 * subscription that way); an error given to aedes would disconnect it.
 */
export function adaptAuthorizeSubscribe (chain: readonly AuthorizeSubscribeHandler[], connections: Connections, log: Logger): AedesAuthorizeSubscribe {
  return function authorizeSubscribe (client, sub, callback) {
    if (sub.topic.startsWith(DIVERT_PREFIX.discard)) {
      log.warn({ clientId: client.id, topic: sub.topic }, 'subscription refused: discarded messages are not readable')
      callback(null, null)
      return
    }
    // a client reads its own rejections and no one else's; wildcards would read others'
    if (sub.topic.startsWith(REJECTIONS_PREFIX) && sub.topic !== REJECTIONS_PREFIX + client.id) {
      log.warn({ clientId: client.id, topic: sub.topic }, 'subscription refused: only $rejections/<own client id> is readable')
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
      attempt.log.warn({ err: toBrokerError(raw) }, 'subscription refused')
      callback(null, null)
    })
  }
}
