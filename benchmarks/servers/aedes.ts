import { createServer, type Socket } from 'node:net'
import { Aedes } from 'aedes'
import type { BenchServer } from './bench-server.js'

/**
 * The baseline: raw Aedes with its default options (memory persistence,
 * mqemitter) behind a plain `net` server on 127.0.0.1, any free port.
 */
export async function startAedes (): Promise<BenchServer> {
  const aedes = await Aedes.createBroker()
  const server = createServer(function handleConnection (socket: Socket) { aedes.handle(socket) })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', function listening () {
      server.off('error', reject)
      resolve()
    })
  })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error(`unexpected server address ${JSON.stringify(address)}`)

  return {
    port: address.port,
    close: async () => {
      // server.close() waits for open sockets; aedes.close() is what ends them
      const serverClosed = new Promise<void>((resolve) => { server.close(() => { resolve() }) })
      await new Promise<void>((resolve) => { aedes.close(() => { resolve() }) })
      await serverClosed
    }
  }
}
