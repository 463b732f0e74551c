import type { Server } from 'node:net'

/** Listen on 127.0.0.1, any free port, and resolve with that port; `what` names the server in errors. */
export async function listenOnFreePort (server: Server, what: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', function listening () {
      server.off('error', reject)
      resolve()
    })
  })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error(`unexpected ${what} address ${JSON.stringify(address)}`)
  return address.port
}
