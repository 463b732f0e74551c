import type { AedesOptions, Client } from 'aedes'
import type { ForwardHandler } from '../context.js'
import type { CoreMetrics } from '../metrics.js'
import type { Connections } from '../transport/connections.js'

type AedesAuthorizeForward = NonNullable<AedesOptions['authorizeForward']>

/** The `forward` chain and where a handler that throws is reported. */
export interface ForwardChain {
  readonly chain: readonly ForwardHandler[]
  readonly reportError: (err: unknown, context: Readonly<Record<string, unknown>>) => void
}

/** The `forward` chain as one check, and the deliveries it has already passed. */
export interface ForwardCheck {
  /** Whether any handler is registered (plugins register theirs after aedes is built). */
  readonly active: () => boolean
  /** Whether `packet` may be written to `client`. A handler that throws withholds it (an access check fails closed) and is reported. */
  readonly allowed: (client: Client, packet: { readonly topic: string }) => boolean
  /**
   * Deliveries the outbound queue asked about before aedes' own authorizeForward (QoS 1/2
   * to persistent sessions, which aedes cannot refuse safely; see outbound.ts): not asked twice.
   */
  readonly passed: WeakSet<object>
}

/** One check over the `forward` chain. */
export function forwardCheck (connections: Connections, forward: ForwardChain): ForwardCheck {
  const { chain } = forward
  return {
    active: () => chain.length > 0,
    allowed: (client, packet) => {
      const delivery = { topic: packet.topic, clientId: client.id, identity: connections.metaOf(client)?.identity }
      for (const handler of chain) {
        let allowed: boolean
        try {
          allowed = handler(delivery)
        } catch (err: unknown) {
          forward.reportError(err, { handler: handler.name, clientId: client.id, topic: packet.topic })
          allowed = false
        }
        if (!allowed) return false
      }
      return true
    },
    passed: new WeakSet()
  }
}

/**
 * aedes asks this once per message and subscriber before writing it (retained and
 * queued messages too): the one place to count deliveries, and where the `forward`
 * chain may keep a message from one client. Without handlers that costs one length
 * check.
 */
export function adaptAuthorizeForward (connections: Connections, metrics: CoreMetrics, check: ForwardCheck): AedesAuthorizeForward {
  return function authorizeForward (client, packet) {
    if (check.active() && !check.passed.delete(packet) && !check.allowed(client, packet)) return null
    const transport = connections.metaOf(client)?.transport
    if (transport !== undefined) metrics.messageDelivered(transport)
    return packet
  }
}
