import type { Socket } from 'node:net'
import { LRUCache } from 'lru-cache'

/** The connection limits of `limits` in the config. */
export interface AdmissionLimits {
  /** MQTT connections open at once, over every transport. */
  readonly maxConnections: number
  /** New connections per second from one address, sustained (a token bucket that holds as many). */
  readonly connectionsPerSecondPerAddress: number
  /** Connections open at once from one address. */
  readonly maxConnectionsPerAddress: number
}

/** The limits this guard enforces, as `ce_broker_limit_hits_total{limit}` names them. */
export type AdmissionLimit = 'connections' | 'connection_rate' | 'connections_per_address'

/** Addresses whose buckets are kept; beyond it the least recently seen start afresh. */
const TRACKED_ADDRESSES = 10_000

interface Bucket {
  tokens: number
  at: number
}

/**
 * Decides, before a byte of MQTT is read, whether a new socket may stay: at most
 * `maxConnections` at once, and from one address at most
 * `connectionsPerSecondPerAddress` new ones a second (a token bucket of that size,
 * refilled continuously, so a burst of that many is fine and a flood is not). A
 * refused socket is destroyed at once: it costs no parser, no client, no timer.
 */
export class Admission {
  readonly #limits: AdmissionLimits
  readonly #buckets = new LRUCache<string, Bucket>({ max: TRACKED_ADDRESSES })
  /** Open connections by address: only addresses with one open are kept. */
  readonly #openBy = new Map<string, number>()
  #open = 0

  constructor (limits: AdmissionLimits) {
    this.#limits = limits
  }

  /** Connections admitted and still open. */
  get open (): number {
    return this.#open
  }

  /**
   * Admit `socket`, or say which limit refuses it (the caller destroys it). `remoteAddress`
   * is the client's: the socket's own, or the one a proxy named.
   */
  admit (socket: Socket, remoteAddress: string | undefined, now = Date.now()): AdmissionLimit | undefined {
    if (this.#open >= this.#limits.maxConnections) return 'connections'
    const address = addressKey(remoteAddress)
    if (address !== undefined && (this.#openBy.get(address) ?? 0) >= this.#limits.maxConnectionsPerAddress) return 'connections_per_address'
    if (address !== undefined && !this.#take(address, now)) return 'connection_rate'
    this.#open++
    if (address !== undefined) this.#openBy.set(address, (this.#openBy.get(address) ?? 0) + 1)
    socket.once('close', () => {
      this.#open--
      if (address === undefined) return
      const left = (this.#openBy.get(address) ?? 1) - 1
      if (left === 0) this.#openBy.delete(address)
      else this.#openBy.set(address, left)
    })
    return undefined
  }

  #take (address: string, now: number): boolean {
    const rate = this.#limits.connectionsPerSecondPerAddress
    const bucket = this.#buckets.get(address) ?? { tokens: rate, at: now }
    bucket.tokens = Math.min(rate, bucket.tokens + ((now - bucket.at) / 1000) * rate)
    bucket.at = now
    this.#buckets.set(address, bucket)
    if (bucket.tokens < 1) return false
    bucket.tokens--
    return true
  }
}

/** The key an address is limited by: IPv4 as is (also when mapped into IPv6), IPv6 by its /64, which one host usually holds whole. */
export function addressKey (address: string | undefined): string | undefined {
  if (address === undefined) return undefined
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  if (mapped?.[1] !== undefined) return mapped[1]
  if (!address.includes(':')) return address
  const [head = '', tail = ''] = address.split('::')
  const left = head === '' ? [] : head.split(':')
  const right = tail === '' ? [] : tail.split(':')
  const groups = address.includes('::') ? [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right] : left
  return `${groups.slice(0, 4).map((g) => g.toLowerCase().replace(/^0+(?=.)/, '')).join(':')}::/64`
}
