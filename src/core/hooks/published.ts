import type { AedesOptions } from 'aedes'
import type { PublishedHandler, PublishedMessage } from '../context.js'
import { DISCARD_PREFIX } from '../reserved-topics.js'
import type { Tracing } from '../tracing/index.js'

type AedesPublished = NonNullable<AedesOptions['published']>
type Report = (err: unknown, context: Readonly<Record<string, unknown>>) => void

/**
 * Fold the published chain into aedes' slot. aedes ends the publish (and, with
 * `--redis`, the pipeline acknowledges it) when every handler has returned and the
 * promises they returned have settled. One handler's throw or rejection neither skips
 * the others nor reaches aedes, which would drop the publisher.
 */
export function adaptPublished (chain: readonly PublishedHandler[], reportError: Report, tracing: Tracing | undefined): AedesPublished {
  return function published (packet, client, callback) {
    // the event's route span ends here; its receive span is what the handlers' work continues
    const trace = tracing === undefined ? undefined : tracing.routed(packet)
    // a discarded packet (refused, or routed already by the commit) is no one's business
    if (chain.length === 0 || packet.topic.startsWith(DISCARD_PREFIX)) {
      callback(null)
      return
    }
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload
    // aedes calls this for its own $SYS publishes and for wills with client === null
    const message: PublishedMessage = { topic: packet.topic, payload, qos: packet.qos, retain: packet.retain, clientId: client?.id ?? null, trace }
    let waiting: Array<Promise<void>> | undefined
    for (const handler of chain) {
      try {
        const work = handler(message)
        if (work !== undefined) (waiting ??= []).push(work.catch((err: unknown) => { report(reportError, err, handler, packet.topic) }))
      } catch (err: unknown) {
        report(reportError, err, handler, packet.topic)
      }
    }
    if (waiting === undefined) callback(null)
    else void Promise.all(waiting).then(() => { callback(null) })
  }
}

function report (reportError: Report, err: unknown, handler: PublishedHandler, topic: string): void {
  reportError(err, { hook: 'published', handler: handler.name, topic })
}
