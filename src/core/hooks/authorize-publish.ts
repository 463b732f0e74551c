import type { AedesOptions, Client, PublishPacket } from 'aedes'
import type { BrokerError } from '../errors.js'
import type { Origin } from '../context.js'
import type { Connections } from '../transport/connections.js'
import { Attempt, createPublishPipeline, payloadOf, type PipelineDeps, type PublishPipeline } from '../pipeline/index.js'
import type { PublishRate } from '../transport/publish-rate.js'

type AedesAuthorizePublish = NonNullable<AedesOptions['authorizePublish']>

export interface PublishGateDeps extends PipelineDeps {
  readonly connections: Connections
  /** `limits.publishRatePerClient`: `undefined` when there is none. */
  readonly rate: PublishRate | undefined
  /** Whether this QoS 2 packet (by client and packet id) was received already and waits for its PUBREL. */
  readonly received: (client: Client, packet: PublishPacket) => Promise<boolean>
}

/** The publish gate: the aedes hook for client publishes and `check` for broker-side ones (HTTP, replay, `broker.publish`). */
export interface PublishGate {
  readonly hook: AedesAuthorizePublish
  readonly check: PublishPipeline['check']
  readonly keep: PublishPipeline['keep']
  readonly tooLarge: PublishPipeline['tooLarge']
  readonly replay: PublishPipeline['replay']
}

/** Build the publish pipeline and its aedes adapter. */
export function createPublishGate (deps: PublishGateDeps): PublishGate {
  const pipeline = createPublishPipeline(deps)
  const { check, keep, tooLarge, replay } = pipeline
  return { hook: adaptAuthorizePublish(pipeline, deps), check, keep, tooLarge, replay }
}

/**
 * Fold the publish pipeline into aedes' single authorizePublish slot. A refusal whose
 * disposition is `reject` goes to aedes, which disconnects the publisher (MQTT 3.1.1
 * has no negative PUBACK); `dead-letter` and `discard` have rewritten the packet's
 * topic, and the publisher is acked. While Redis is unreachable the publish is held.
 */
export function adaptAuthorizePublish (pipeline: PublishPipeline, deps: Pick<PublishGateDeps, 'connections' | 'metrics' | 'log' | 'received' | 'journal' | 'rate' | 'sampler'>): AedesAuthorizePublish {
  const { connections, metrics, log, rate } = deps

  function admit (client: Client | null, packet: PublishPacket, origin: Origin, meta: ReturnType<Connections['metaOf']>, callback: (err?: Error | null) => void): void {
    if (pipeline.unchecked(packet.topic, packet.qos)) {
      // nothing to ask: skip building the attempt (the benchmark's no-plugin path)
      callback(null)
      return
    }
    const attempt = new Attempt(packet.topic, payloadOf(packet), packet.qos, packet.retain, client?.id ?? null, meta?.identity, origin, log, undefined)
    attempt.source = client
    pipeline.decide(packet, attempt, function decided (err: BrokerError | undefined) {
      callback(err !== undefined && err.disposition === 'reject' ? err : null)
    })
  }

  /**
   * A committing node routes a publish before aedes acknowledges it; a QoS 2 packet sent
   * again before its PUBREL (DUP set) was routed the first time: aedes finds it stored
   * and answers PUBREC only, so it is let through unrouted.
   */
  function admitOnce (client: Client | null, packet: PublishPacket, origin: Origin, meta: ReturnType<Connections['metaOf']>, callback: (err?: Error | null) => void): void {
    if (client === null || packet.qos !== 2 || packet.dup !== true || deps.journal === undefined) {
      admit(client, packet, origin, meta, callback)
      return
    }
    deps.received(client, packet).then((seen) => {
      if (seen) callback(null)
      else admit(client, packet, origin, meta, callback)
    }, (err: unknown) => { callback(err instanceof Error ? err : new Error(String(err))) })
  }

  /** A client over `limits.publishRatePerClient`: its publish waits for its token, and aedes reads nothing more from it meanwhile. */
  function paced (client: Client, delayMs: number, go: () => void): void {
    metrics.limitHit('publish_rate')
    const suppressed = deps.sampler.take(`publish-rate:${client.id}`)
    if (suppressed !== undefined) log.info({ clientId: client.id, waitMs: Math.round(delayMs), suppressed }, 'client over limits.publishRatePerClient: its publishes wait and its reads pause')
    setTimeout(go, delayMs)
  }

  function decide (client: Client | null, packet: PublishPacket, origin: Origin, meta: ReturnType<Connections['metaOf']>, callback: (err?: Error | null) => void): void {
    if (!pipeline.outage.available()) {
      pipeline.outage.hold({ clientId: client?.id, topic: packet.topic, qos: packet.qos }, function availableAgain () {
        admitOnce(client, packet, origin, meta, callback)
      }, callback)
      return
    }
    admitOnce(client, packet, origin, meta, callback)
  }

  return function authorizePublish (client, packet, callback) {
    // wills come through here too, as plain { topic, payload } objects without `cmd`
    const meta = client === null ? undefined : connections.metaOf(client)
    const origin: Origin = client === null ? 'internal' : meta?.transport ?? 'tcp'
    if (packet.cmd === 'publish') metrics.publishReceived(origin)
    const delayMs = rate === undefined || client === null || packet.cmd !== 'publish' ? 0 : rate.delayOf(client)
    if (delayMs > 0 && client !== null) {
      paced(client, delayMs, function tokenTaken () { decide(client, packet, origin, meta, callback) })
      return
    }
    decide(client, packet, origin, meta, callback)
  }
}
