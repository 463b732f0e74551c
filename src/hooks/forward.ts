import type { AedesOptions } from 'aedes'
import type { CoreMetrics } from '../metrics.js'
import type { Connections } from '../transport/connections.js'

type AedesAuthorizeForward = NonNullable<AedesOptions['authorizeForward']>

/** aedes asks this once per message and subscriber before writing it: the one place to count deliveries. */
export function adaptAuthorizeForward (connections: Connections, metrics: CoreMetrics): AedesAuthorizeForward {
  return function authorizeForward (client, packet) {
    const transport = connections.metaOf(client)?.transport
    if (transport !== undefined) metrics.messageDelivered(transport)
    return packet
  }
}
