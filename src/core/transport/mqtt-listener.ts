import { createServer as createTcpServer, type Server, type Socket } from 'node:net'
import { createServer as createTlsServer } from 'node:tls'
import { ListenError } from '../errors.js'
import type { Logger } from '../logger.js'

/** A bound MQTT listener. */
export interface Listener {
  readonly port: number
  /** Stop accepting; open connections are closed by aedes and the connection tracker. */
  readonly close: () => Promise<void>
}

export interface MqttListenerOptions {
  readonly host: string
  readonly port: number
  /** PEM key and certificate: MQTT over TLS instead of plain TCP. */
  readonly tls?: { readonly key: Buffer, readonly cert: Buffer }
  readonly log: Logger
  /** Called for each accepted socket (after the TLS handshake for TLS). */
  readonly onConnection: (socket: Socket) => void
}

/** Listen for MQTT over TCP or TLS; port 0 binds any free port, reported in `port`. */
export async function listenMqtt (options: MqttListenerOptions): Promise<Listener> {
  const { log, onConnection } = options
  const server: Server = options.tls === undefined
    ? createTcpServer(onConnection)
    : createTlsServer({ key: options.tls.key, cert: options.tls.cert }, onConnection)
  // a failed TLS handshake concerns that socket only
  server.on('tlsClientError', function tlsClientError (err: Error) { log.debug({ err }, 'TLS handshake failed') })

  await new Promise<void>((resolve, reject) => {
    const failed = (err: Error): void => { reject(new ListenError(options.tls === undefined ? 'MQTT/TCP' : 'MQTT/TLS', `${options.host}:${options.port}`, { cause: err })) }
    server.once('error', failed)
    server.listen(options.port, options.host, () => {
      server.off('error', failed)
      resolve()
    })
  })
  server.on('error', function listenerError (err: Error) { log.error({ err }, 'MQTT listener error') })

  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : options.port
  return {
    port,
    close: async () => {
      await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
    }
  }
}
