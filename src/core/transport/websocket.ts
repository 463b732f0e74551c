import type { IncomingMessage, Server } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Socket } from 'node:net'
import { WebSocketServer, createWebSocketStream } from 'ws'
import type { Logger } from '../logger.js'

/** Path of MQTT over WebSocket on the HTTP port. */
export const MQTT_WS_PATH = '/mqtt'

export interface WebSocketOptions {
  readonly log: Logger
  /** Largest WebSocket message accepted, in bytes; larger ones close the connection (1009). */
  readonly maxPayload: number
  /** Called with the MQTT byte stream of each WebSocket, the raw socket under it and the upgrade request. */
  readonly onConnection: (stream: Duplex, socket: Socket, req: IncomingMessage) => void
  /** Called when a message over `maxPayload` closes a WebSocket (1009). */
  readonly onOversize?: () => void
}

/**
 * MQTT over WebSocket with `ws` 8 and `createWebSocketStream`, as aedes' own docs
 * do (not `websocket-stream`, which pins ws 3 with known DoS advisories).
 * Upgrades on other paths are refused with 404.
 */
export function attachWebSocket (server: Server, options: WebSocketOptions): { close: () => void } {
  const { log, onConnection } = options
  const wss = new WebSocketServer({ noServer: true, maxPayload: options.maxPayload })
  wss.on('error', function wsServerError (err: Error) { log.error({ err }, 'WebSocket server error') })

  function upgrade (req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const path = (req.url ?? '').split('?')[0]
    if (path !== MQTT_WS_PATH) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')
      return
    }
    wss.handleUpgrade(req, socket, head, function upgraded (ws) {
      // a message over maxPayload: ws reports this error, then closes with 1009
      ws.on('error', function wsError (err: Error & { code?: string }) { if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') options.onOversize?.() })
      const stream = createWebSocketStream(ws)
      // aedes handles stream errors; this covers errors after aedes let go of the stream
      stream.on('error', function wsStreamError (err: Error) { log.debug({ err }, 'WebSocket stream error') })
      onConnection(stream, req.socket, req)
    })
  }
  server.on('upgrade', upgrade)

  return {
    close: () => {
      server.off('upgrade', upgrade)
      for (const ws of wss.clients) ws.terminate()
      wss.close()
    }
  }
}
