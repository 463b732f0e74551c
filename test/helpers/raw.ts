import { defer } from './cleanup.js'
import { connect as netConnect, type Socket } from 'node:net'
import type { TestContext } from 'node:test'
import mqttPacket, { type Packet } from 'mqtt-packet'

/** A raw MQTT connection: write packets, read parsed packets. For what the `mqtt` client refuses to send. */
export interface RawClient {
  readonly socket: Socket
  send: (packet: Packet) => void
  /** Write bytes as they are, for packets mqtt-packet refuses to generate. */
  sendBytes: (bytes: Buffer) => void
  /** The next packet from the broker, or `null` when the socket closes first. */
  next: (timeoutMs?: number) => Promise<Packet | null>
}

export async function rawConnect (t: TestContext, port: number): Promise<RawClient> {
  const socket = netConnect(port, '127.0.0.1')
  defer(t, () => { socket.destroy() })
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  const parser = mqttPacket.parser({ protocolVersion: 4 })
  const queue: Packet[] = []
  const waiters: Array<(packet: Packet | null) => void> = []
  let ended = false
  parser.on('packet', (packet: Packet) => {
    const waiter = waiters.shift()
    if (waiter === undefined) queue.push(packet)
    else waiter(packet)
  })
  socket.on('data', (chunk: Buffer) => { parser.parse(chunk) })
  socket.on('close', () => {
    ended = true
    for (const waiter of waiters.splice(0)) waiter(null)
  })
  socket.on('error', () => { /* a reset shows up as 'close' */ })
  return {
    socket,
    send: (packet) => { socket.write(mqttPacket.generate(packet)) },
    sendBytes: (bytes) => { socket.write(bytes) },
    next: async (timeoutMs = 5_000) => {
      const queued = queue.shift()
      if (queued !== undefined) return queued
      if (ended) return null
      return await new Promise<Packet | null>((resolve, reject) => {
        const timer = setTimeout(() => { reject(new Error(`no packet within ${timeoutMs} ms`)) }, timeoutMs)
        waiters.push((packet) => {
          clearTimeout(timer)
          resolve(packet)
        })
      })
    }
  }
}

/** MQTT's remaining-length varint [MQTT-2.2.3]. */
export function varint (value: number): Buffer {
  const bytes: number[] = []
  let rest = value
  do {
    const low = rest % 128
    rest = Math.floor(rest / 128)
    bytes.push(rest > 0 ? low | 0x80 : low)
  } while (rest > 0)
  return Buffer.from(bytes)
}
