import type { AedesOptions } from 'aedes'
import type { ForwardHandler } from '../context.js'
import type { CoreMetrics } from '../metrics.js'
import type { Connections } from '../transport/connections.js'

type AedesAuthorizeForward = NonNullable<AedesOptions['authorizeForward']>

/** The `forward` chain and where a handler that throws is reported. */
export interface ForwardChain {
  readonly chain: readonly ForwardHandler[]
  readonly reportError: (err: unknown, context: Readonly<Record<string, unknown>>) => void
}

/**
 * aedes asks this once per message and subscriber before writing it (retained and
 * queued messages too): the one place to count deliveries, and where the `forward`
 * chain may keep a message from one client. Without handlers that costs one length
 * check. A handler that throws withholds the message (an access check fails closed)
 * and is reported; nothing throws into aedes.
 */
export function adaptAuthorizeForward (connections: Connections, metrics: CoreMetrics, forward?: ForwardChain): AedesAuthorizeForward {
  const chain = forward?.chain ?? []
  return function authorizeForward (client, packet) {
    const meta = connections.metaOf(client)
    if (chain.length > 0 && forward !== undefined) {
      const delivery = { topic: packet.topic, clientId: client.id, identity: meta?.identity }
      for (const handler of chain) {
        let allowed: boolean
        try {
          allowed = handler(delivery)
        } catch (err: unknown) {
          forward.reportError(err, { handler: handler.name, clientId: client.id, topic: packet.topic })
          allowed = false
        }
        if (!allowed) return null
      }
    }
    if (meta?.transport !== undefined) metrics.messageDelivered(meta.transport)
    return packet
  }
}
