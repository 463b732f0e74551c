import { createServer, type Socket } from 'node:net'
import type { TestContext } from 'node:test'
import mqttPacket, { type Packet } from 'mqtt-packet'
import { defer } from './cleanup.js'

/** An MQTT server that accepts the connection and the subscription and never acknowledges a publish. */
export interface SilentServer {
  readonly port: number
  /** Close every connection it holds, as a broker that went away would. */
  readonly dropAll: () => void
}

export async function silentMqttServer (t: TestContext): Promise<SilentServer> {
  const sockets = new Set<Socket>()
  const server = createServer((socket) => {
    sockets.add(socket)
    const parser = mqttPacket.parser({ protocolVersion: 4 })
    parser.on('packet', (packet: Packet) => {
      if (packet.cmd === 'connect') socket.write(mqttPacket.generate({ cmd: 'connack', returnCode: 0, sessionPresent: false }))
      if (packet.cmd === 'subscribe') socket.write(mqttPacket.generate({ cmd: 'suback', messageId: packet.messageId ?? 0, granted: [1] }))
    })
    socket.on('data', (chunk) => { parser.parse(chunk) })
    socket.on('error', () => { /* the client going away is the end of it */ })
    socket.on('close', () => { sockets.delete(socket) })
  })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  const dropAll = (): void => { for (const socket of sockets) socket.destroy() }
  defer(t, async () => {
    dropAll()
    await new Promise((resolve) => { server.close(resolve) })
  })
  const address = server.address()
  return { port: typeof address === 'object' && address !== null ? address.port : 0, dropAll }
}
