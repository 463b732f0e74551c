import type { AedesOptions, Client } from 'aedes'
import { ReservedTopicError, toBrokerError, type Disposition } from '../errors.js'
import type { Logger } from '../logger.js'
import type { CoreMetrics } from '../metrics.js'
import type { AuthorizePublishHandler } from '../context.js'
import type { Connections } from '../transport/connections.js'
import { settleChain } from './chain.js'
import { Attempt } from './publish-attempt.js'

type AedesAuthorizePublish = NonNullable<AedesOptions['authorizePublish']>

/** Topic prefixes a diverted publish is moved under. Nobody may publish there; `$DISCARD/` nobody may read. */
export const DIVERT_PREFIX: Readonly<Record<Exclude<Disposition, 'reject'>, string>> = {
  'dead-letter': '$DLQ/',
  discard: '$DISCARD/'
}

export interface AuthorizePublishDeps {
  readonly chain: readonly AuthorizePublishHandler[]
  readonly connections: Connections
  readonly metrics: CoreMetrics
  readonly log: Logger
}

/**
 * Fold the authorizePublish chain into aedes' single slot. Publishes to `$`
 * topics are refused outright (aedes only guards `$SYS/`). A handler's error
 * decides by its `disposition`: `reject` disconnects the publisher (MQTT 3.1.1
 * has no negative PUBACK); `dead-letter` and `discard` rewrite the topic so that
 * no subscriber of the original topic sees it, and the publisher is acked.
 */
export function adaptAuthorizePublish (deps: AuthorizePublishDeps): AedesAuthorizePublish {
  const { chain, connections, metrics, log } = deps
  return function authorizePublish (client: Client | null, packet, callback) {
    const topic = packet.topic
    // wills come through here too, as plain { topic, payload } objects without `cmd`
    const origin = client === null ? 'internal' : connections.metaOf(client)?.transport ?? 'tcp'
    if (packet.cmd === 'publish') metrics.publishReceived(origin)

    if (topic.charCodeAt(0) === 36 /* $ */) {
      const err = new ReservedTopicError(topic)
      log.warn({ clientId: client?.id ?? null, topic, code: err.code }, 'publish to a reserved topic refused, client disconnected')
      callback(err)
      return
    }
    if (chain.length === 0) {
      callback(null)
      return
    }

    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload
    const attempt = new Attempt(topic, payload, packet.qos, packet.retain, client?.id ?? null, origin, log)
    settleChain(chain, attempt, function allowed () { callback(null) }, function refused (raw: unknown) {
      const err = toBrokerError(raw)
      if (err.disposition === 'reject') {
        attempt.log.warn({ err }, 'publish refused, client disconnected')
        callback(err)
        return
      }
      attempt.log.warn({ err }, 'publish diverted')
      // the only place that rewrites a packet's topic: subscribers of the original topic never see it
      packet.topic = DIVERT_PREFIX[err.disposition] + topic
      packet.retain = false
      callback(null)
    })
  }
}

/**
 * Run a broker-side publish (`broker.publish()`) through the same adapter as a
 * client's: resolves when allowed (the packet may have been diverted), rejects
 * with the `BrokerError` when refused.
 */
export async function publishThrough (authorize: AedesAuthorizePublish, packet: Parameters<AedesAuthorizePublish>[1]): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    authorize(null, packet, function publishDecided (err) {
      if (err === undefined || err === null) resolve()
      else reject(err)
    })
  })
}
