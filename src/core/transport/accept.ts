import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { Aedes, Client } from 'aedes'
import type { LoadedConfig as BrokerConfig } from '../config/index.js'
import type { Transport } from '../context.js'
import type { Logger } from '../logger.js'
import type { LogSampler } from '../log-sampler.js'
import type { CoreMetrics } from '../metrics.js'
import { messageOf } from '../errors.js'
import { Admission } from './admission.js'
import type { Connections } from './connections.js'
import { listenMqtt, type Listener } from './mqtt-listener.js'
import type { OutboundQueues } from './outbound.js'
import { readProxyHeader } from './proxy-protocol.js'
import { guardPacketSize, type OversizeInfo, type PacketGuard } from './size-guard.js'

/** Hands one accepted connection to aedes: `(stream, socket, transport, remoteAddress, req?)`. */
export type ConnectionHandler = (stream: Duplex, socket: Socket, transport: Transport, remoteAddress: string | undefined, req?: IncomingMessage) => void

/** What accepting a connection uses. */
export interface AcceptDeps {
  readonly aedes: Aedes
  readonly limits: BrokerConfig['limits']
  readonly connections: Connections
  readonly queues: OutboundQueues
  /** Each connection's packet guard, told when its CONNECT is accepted. */
  readonly packetGuards: WeakMap<Client, PacketGuard>
  readonly metrics: CoreMetrics
  readonly log: Logger
  /** The warn lines a client can trigger, sampled per address. */
  readonly sampler: LogSampler
  /** A PUBLISH refused from its header for its size: counted and audited as `payload_too_large`. */
  readonly tooLarge: (info: OversizeInfo, transport: Transport, clientId: string | null) => void
}

/**
 * The one way in for every transport: admission (connection limits), then the packet
 * guard on the stream before aedes reads a byte, then aedes, the outbound queue and
 * the connection's metadata.
 */
export function connectionHandler (deps: AcceptDeps): ConnectionHandler {
  const { limits, metrics, log } = deps
  const admission = new Admission(limits)
  /** A refusal of a connection's bytes, sampled per address (the client may have no id yet), as the connect refusals are. */
  const warnSampled = (fields: Readonly<Record<string, unknown>> & { readonly remoteAddress: string | undefined }, msg: string): void => {
    const suppressed = deps.sampler.take(`address ${fields.remoteAddress ?? ''}`)
    if (suppressed !== undefined) log.warn(suppressed === 0 ? fields : { ...fields, suppressed }, msg)
  }
  return function handle (stream, socket, transport, remoteAddress, req) {
    const refused = admission.admit(socket, remoteAddress)
    if (refused !== undefined) {
      // closed before a byte is read: a flood costs no parser and no client. Logged at debug, counted always
      metrics.limitHit(refused)
      log.debug({ transport, remoteAddress, limit: refused }, 'connection refused: over a limit')
      socket.destroy()
      return
    }
    deps.connections.track(socket, transport)
    let client: Client | undefined
    // installed before aedes reads a byte: a packet over a limit is refused from its header
    const guard = guardPacketSize(stream, {
      maxPayloadBytes: limits.maxPayloadBytes,
      maxPacketBytes: limits.maxPacketBytes,
      maxConnectPacketBytes: limits.maxConnectPacketBytes,
      maxFiltersPerPacket: limits.maxFiltersPerPacket,
      onOversize: function refuseOversize (info) {
        deps.tooLarge(info, transport, client?.id ?? null)
        warnSampled({ clientId: client?.id, transport, remoteAddress, reason: 'payload_too_large', ...info }, 'publish over limits.maxPayloadBytes refused, client disconnected')
      },
      // the guard refuses once per connection; a flood of connections is sampled per address
      onRefused: function refusePacket (refusal) {
        metrics.limitHit(refusal.limit)
        warnSampled({ clientId: client?.id, transport, remoteAddress, ...refusal }, 'packet over a limit refused, connection closed')
      }
    })
    client = deps.aedes.handle(stream, req)
    deps.packetGuards.set(client, guard)
    deps.queues.attach(client)
    deps.connections.attach(client, { transport, remoteAddress })
  }
}

/**
 * Open the MQTT/TCP listener (reading a PROXY header first when `mqtt.proxyProtocol`),
 * and the MQTT/TLS one when its key and certificate were read.
 */
export async function listenMqttTransports (config: BrokerConfig, tls: { key: Buffer, cert: Buffer } | undefined, handle: ConnectionHandler, metrics: CoreMetrics, log: Logger): Promise<{ tcp: Listener, tls: Listener | undefined }> {
  const tcp = await listenMqtt({
    host: config.mqtt.host,
    port: config.mqtt.port,
    log,
    onConnection: config.mqtt.proxyProtocol
      ? (socket) => {
          // the load balancer names the client first; a socket that does not is closed
          readProxyHeader(socket, config.limits.connectTimeoutMs).then((address) => { handle(socket, socket, 'tcp', address ?? socket.remoteAddress) }, (err: unknown) => {
            metrics.limitHit('proxy_header')
            log.debug({ remoteAddress: socket.remoteAddress, err: messageOf(err) }, 'connection refused: no valid PROXY header')
            socket.destroy()
          })
        }
      : (socket) => { handle(socket, socket, 'tcp', socket.remoteAddress) }
  })
  if (tls === undefined || config.mqtt.tls === undefined) return { tcp, tls: undefined }
  try {
    const secure = await listenMqtt({ host: config.mqtt.host, port: config.mqtt.tls.port, tls, log, onConnection: (socket) => { handle(socket, socket, 'tls', socket.remoteAddress) } })
    return { tcp, tls: secure }
  } catch (err: unknown) {
    await tcp.close()
    throw err
  }
}
