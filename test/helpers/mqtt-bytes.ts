import mqttPacket, { type IPublishPacket, type Packet, type QoS } from 'mqtt-packet'
import type { PacketLimits } from '../../src/core/transport/size-guard.js'
import { varint } from './raw.js'

/** MQTT byte streams for the packet guard's tests. */

export const KIB = 1024
export const MIB = 1024 * KIB
/** The payload limit of the guard tests. */
export const LIMIT = 256 * KIB
/** Limits that never refuse: each test lowers the one it is about. */
export const UNLIMITED: PacketLimits = { maxPayloadBytes: Number.MAX_SAFE_INTEGER, maxPacketBytes: Number.MAX_SAFE_INTEGER, maxConnectPacketBytes: Number.MAX_SAFE_INTEGER, maxFiltersPerPacket: Number.MAX_SAFE_INTEGER }

/** A PUBLISH of `payloadBytes` bytes (packet id 42 at QoS 1/2). */
export function publish (topic: string, payloadBytes: number, qos: QoS): IPublishPacket {
  const packet: IPublishPacket = { cmd: 'publish', topic, payload: Buffer.alloc(payloadBytes, 0x61), qos, dup: false, retain: false }
  if (qos > 0) packet.messageId = 42
  return packet
}

/** `packets` as bytes, one after another. */
export function encode (...packets: Packet[]): Buffer {
  return Buffer.concat(packets.map((packet) => mqttPacket.generate(packet)))
}

/** The header of a PUBLISH announcing `payloadBytes`, written by hand: fixed header, length, topic, packet id; no payload. */
export function publishHeader (topic: string, payloadBytes: number, qos: QoS): Buffer {
  const topicBytes = Buffer.from(topic)
  const topicLength = Buffer.from([topicBytes.length >> 8, topicBytes.length & 0xff])
  const packetId = qos > 0 ? Buffer.from([0, 42]) : Buffer.alloc(0)
  const remaining = 2 + topicBytes.length + packetId.length + payloadBytes
  return Buffer.concat([Buffer.from([0x30 | (qos << 1)]), varint(remaining), topicLength, topicBytes, packetId])
}

/** Number of remaining-length bytes of the packet starting at `offset`. */
export function lengthBytesAt (bytes: Buffer, offset: number): number {
  let count = 1
  while (((bytes[offset + count] ?? 0) & 0x80) !== 0) count++
  return count
}

/** Stream offset of the last remaining-length byte of the packet starting at `offset`. */
export function lengthEndAt (bytes: Buffer, offset: number): number {
  return offset + lengthBytesAt(bytes, offset)
}

/** Remaining length of the single packet `packet`. */
export function remainingOf (packet: Buffer): number {
  return packet.length - 1 - lengthBytesAt(packet, 0)
}

/** A SUBSCRIBE of `filters` at QoS 1. */
export function subscribePacket (filters: readonly string[]): Buffer {
  return encode({ cmd: 'subscribe', messageId: 7, subscriptions: filters.map((topic) => ({ topic, qos: 1 as const })) })
}

/** An UNSUBSCRIBE of `filters`. */
export function unsubscribePacket (filters: readonly string[]): Buffer {
  return encode({ cmd: 'unsubscribe', messageId: 7, unsubscriptions: [...filters] })
}

/** A clean MQTT 3.1.1 CONNECT of `clientId`. */
export function connectPacket (clientId: string): Buffer {
  return encode({ cmd: 'connect', clientId, protocolVersion: 4, protocolId: 'MQTT', clean: true, keepalive: 0 })
}

/** Stream offset of the low byte of filter number `n` (1-based) of the SUBSCRIBE or UNSUBSCRIBE at `offset`. */
export function filterLengthLowAt (bytes: Buffer, offset: number, n: number, qosByte: boolean): number {
  let at = lengthEndAt(bytes, offset) + 1 + 2 // past the fixed header and the packet id
  for (let filter = 1; filter < n; filter++) at += 2 + bytes.readUInt16BE(at) + (qosByte ? 1 : 0)
  return at + 1
}
