import { createServer, type Socket } from 'node:net'
import { Aedes } from 'aedes'
import type { BenchServer } from './bench-server.js'
import { listenOnFreePort } from '../listen.js'

/**
 * The baseline: raw Aedes with its default options (memory persistence,
 * mqemitter) behind a plain `net` server on 127.0.0.1, any free port.
 * `noDelay` turns Nagle's algorithm off on every accepted socket (`net`'s default
 * leaves it on, as ce-broker's listener does): for latency scenarios, where a small
 * write held back until the subscriber's delayed ACK (up to 40 ms on Linux) would
 * measure the kernel's timer rather than the broker.
 */
export async function startAedes (noDelay = false): Promise<BenchServer> {
  const aedes = await Aedes.createBroker()
  const server = createServer({ noDelay }, function handleConnection (socket: Socket) { aedes.handle(socket) })
  const port = await listenOnFreePort(server, 'server')

  return {
    port,
    close: async () => {
      // server.close() waits for open sockets; aedes.close() is what ends them
      const serverClosed = new Promise<void>((resolve) => { server.close(() => { resolve() }) })
      await new Promise<void>((resolve) => { aedes.close(() => { resolve() }) })
      await serverClosed
    }
  }
}
