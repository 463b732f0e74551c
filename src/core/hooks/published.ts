import type { AedesOptions } from 'aedes'
import type { PublishedHandler, PublishedMessage } from '../context.js'

type AedesPublished = NonNullable<AedesOptions['published']>

/**
 * Fold the published chain into aedes' slot. Handlers are synchronous (aedes
 * holds the publisher's next packet until this returns), and one handler's throw
 * neither skips the others nor reaches aedes, which would drop the publisher.
 */
export function adaptPublished (chain: readonly PublishedHandler[], reportError: (err: unknown, context: Readonly<Record<string, unknown>>) => void): AedesPublished {
  return function published (packet, client, callback) {
    if (chain.length > 0) {
      const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload
      // aedes calls this for its own $SYS publishes and for wills with client === null
      const message: PublishedMessage = { topic: packet.topic, payload, qos: packet.qos, retain: packet.retain, clientId: client?.id ?? null }
      for (const handler of chain) {
        try {
          handler(message)
        } catch (err: unknown) {
          reportError(err, { hook: 'published', handler: handler.name, topic: packet.topic })
        }
      }
    }
    callback(null)
  }
}
