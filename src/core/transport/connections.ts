import type { Socket } from 'node:net'
import type { Client } from 'aedes'
import type { Identity, Transport } from '../context.js'

/** What the broker knows about an MQTT client beyond what aedes keeps. */
export interface ClientMeta {
  readonly transport: Transport
  readonly remoteAddress: string | undefined
  /** Set once the client has authenticated as somebody. */
  readonly identity?: Identity
}

/** Bytes that crossed the wire, counted on the raw sockets (TLS and WebSocket framing included). */
export interface ByteCount {
  received: number
  sent: number
}

export const TRANSPORTS: readonly Transport[] = ['tcp', 'tls', 'ws', 'wss']

/**
 * The live sockets of one broker, by transport, and the metadata of their MQTT
 * clients. Byte counts are read from the sockets when metrics are scraped, so
 * nothing is counted on the data path.
 */
export class Connections {
  readonly #meta = new WeakMap<Client, ClientMeta>()
  readonly #live = new Map<Transport, Set<Socket>>(TRANSPORTS.map((t) => [t, new Set()]))
  readonly #closed = new Map<Transport, ByteCount>(TRANSPORTS.map((t) => [t, { received: 0, sent: 0 }]))
  readonly #accepted = new Map<Transport, number>(TRANSPORTS.map((t) => [t, 0]))

  /** Track a raw socket until it closes. */
  track (socket: Socket, transport: Transport): void {
    const live = this.#live.get(transport)
    const closed = this.#closed.get(transport)
    if (live === undefined || closed === undefined) return
    live.add(socket)
    this.#accepted.set(transport, (this.#accepted.get(transport) ?? 0) + 1)
    socket.once('close', function untrack () {
      live.delete(socket)
      closed.received += socket.bytesRead
      closed.sent += socket.bytesWritten
    })
  }

  attach (client: Client, meta: ClientMeta): void {
    this.#meta.set(client, meta)
  }

  metaOf (client: Client): ClientMeta | undefined {
    return this.#meta.get(client)
  }

  /** Note who an authenticated client is. */
  identify (client: Client, identity: Identity): void {
    const meta = this.#meta.get(client)
    if (meta !== undefined) this.#meta.set(client, { ...meta, identity })
  }

  bytes (transport: Transport): ByteCount {
    const total = { ...(this.#closed.get(transport) ?? { received: 0, sent: 0 }) }
    for (const socket of this.#live.get(transport) ?? []) {
      total.received += socket.bytesRead
      total.sent += socket.bytesWritten
    }
    return total
  }

  accepted (transport: Transport): number {
    return this.#accepted.get(transport) ?? 0
  }

  /** Destroy every socket still open (the last step of a shutdown). */
  destroyAll (): void {
    for (const sockets of this.#live.values()) {
      for (const socket of sockets) socket.destroy()
    }
  }
}
