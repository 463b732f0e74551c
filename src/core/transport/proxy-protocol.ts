import { isIP, type Socket } from 'node:net'
import {
  Command, IPv4ProxyAddress, IPv6ProxyAddress, V1ProxyProtocol, V2ProxyProtocol
} from 'proxy-protocol-js'

/** v2: 12-byte signature, version/command, family/protocol, 2-byte length of what follows. */
const V2_FIXED = 16
/** v1 headers are one line of at most 107 bytes, CRLF included. */
const V1_MAX = 107
/** Largest v2 header accepted: addresses (at most 216 bytes for UNIX) plus room for TLVs. */
const V2_MAX = 1024

/** A PROXY header that cannot be read; the connection is closed. */
export class ProxyHeaderError extends Error {}

/**
 * Read the PROXY protocol header (v1 or v2, as HAProxy's `send-proxy` / `send-proxy-v2`
 * write it) from the start of `socket`, and leave every byte after it unread for MQTT.
 * Resolves the client's address the header carries, or `undefined` for a LOCAL (v2) or
 * UNKNOWN (v1) header: a connection of the proxy itself, known by its socket address.
 * Rejects when the stream does not start with a header, or it does not come in `timeoutMs`.
 */
export async function readProxyHeader (socket: Socket, timeoutMs: number): Promise<string | undefined> {
  return await new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0)
    const timer = setTimeout(() => { finish(new ProxyHeaderError(`no PROXY header within ${timeoutMs} ms`)) }, timeoutMs)
    const finish = (result: Error | { address: string | undefined, rest: Buffer }): void => {
      clearTimeout(timer)
      socket.off('readable', onReadable)
      socket.off('end', onEnd)
      if (result instanceof Error) {
        reject(result)
        return
      }
      if (result.rest.length > 0) socket.unshift(result.rest)
      resolve(result.address)
    }
    const onEnd = (): void => { finish(new ProxyHeaderError('the connection ended before its PROXY header')) }
    const onReadable = (): void => {
      let chunk: Buffer | null
      while ((chunk = socket.read() as Buffer | null) !== null) buffered = Buffer.concat([buffered, chunk])
      let parsed: { address: string | undefined, length: number } | undefined
      try {
        parsed = parseHeader(buffered)
      } catch (err: unknown) {
        finish(err instanceof ProxyHeaderError ? err : new ProxyHeaderError(`bad PROXY header: ${err instanceof Error ? err.message : String(err)}`))
        return
      }
      if (parsed !== undefined) finish({ address: parsed.address, rest: buffered.subarray(parsed.length) })
    }
    socket.on('readable', onReadable)
    socket.once('end', onEnd)
    onReadable()
  })
}

/** The header at the start of `bytes` and its length, `undefined` while more bytes are needed; throws when it is no header. */
function parseHeader (bytes: Buffer): { address: string | undefined, length: number } | undefined {
  if (bytes.length === 0) return undefined
  if (startsLike(bytes, V2_SIGNATURE)) {
    if (bytes.length < V2_FIXED) return undefined
    const length = V2_FIXED + bytes.readUInt16BE(14)
    if (length > V2_MAX) throw new ProxyHeaderError(`a PROXY v2 header of ${length} bytes is over ${V2_MAX}`)
    if (bytes.length < length) return undefined
    const header = V2ProxyProtocol.parse(bytes.subarray(0, length))
    if (header.command === Command.LOCAL) return { address: undefined, length }
    const proxied = header.proxyAddress
    if (proxied instanceof IPv4ProxyAddress) return { address: proxied.sourceAddress.address.join('.'), length }
    if (proxied instanceof IPv6ProxyAddress) return { address: ipv6(proxied.sourceAddress.address), length }
    return { address: undefined, length }
  }
  if (!startsLike(bytes, V1_SIGNATURE)) throw new ProxyHeaderError('the connection does not start with a PROXY header')
  const end = bytes.indexOf('\r\n')
  if (end === -1) {
    if (bytes.length >= V1_MAX) throw new ProxyHeaderError(`no end of the PROXY v1 line within ${V1_MAX} bytes`)
    return undefined
  }
  const line = bytes.subarray(0, end + 2).toString('latin1')
  if (line.startsWith('PROXY UNKNOWN')) return { address: undefined, length: end + 2 }
  const address = V1ProxyProtocol.parse(line).source.ipAddress
  if (isIP(address) === 0) throw new ProxyHeaderError(`the PROXY v1 source ${JSON.stringify(address)} is not an IP address`)
  return { address, length: end + 2 }
}

const V1_SIGNATURE = Buffer.from('PROXY ')
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])

/** Whether `bytes` start with `signature`, or with as much of it as they hold. */
function startsLike (bytes: Buffer, signature: Buffer): boolean {
  const n = Math.min(bytes.length, signature.length)
  return n > 0 && bytes.subarray(0, n).equals(signature.subarray(0, n))
}

function ipv6 (bytes: readonly number[]): string {
  const groups: string[] = []
  for (let i = 0; i < 16; i += 2) groups.push((((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0)).toString(16))
  return groups.join(':')
}
