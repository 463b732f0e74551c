/**
 * Publish → arrival latency for the paced scenarios: the load generator stamps each
 * event with its wall-clock send time in a CloudEvents extension attribute, and
 * whoever receives it (the MQTT subscriber in `loadgen.js`, the webhook receiver in
 * `receiver.js`) subtracts that from its own wall clock at arrival.
 *
 * All processes run on the same machine and read the same system clock, so their
 * wall clocks are comparable. `Date.now()` would quantize both ends to whole ms (up to
 * ±1 ms of error on a figure of a few ms); `performance.timeOrigin + performance.now()`
 * is the same clock with sub-ms resolution.
 */
import { performance } from 'node:perf_hooks'
import type { LatencySummary } from './protocol.js'

/**
 * The extension attribute that carries the send stamp: lower-case alphanumeric, a
 * string value, as the CloudEvents envelope check requires. In a webhook delivery
 * (binary HTTP binding) it arrives as the `ce-sentat` header.
 */
export const SEND_STAMP_ATTRIBUTE = 'sentat'

/** The header a binary-mode webhook delivery carries the send stamp in. */
export const SEND_STAMP_HEADER = `ce-${SEND_STAMP_ATTRIBUTE}`

/**
 * Characters of a stamp: wall-clock ms with 3 decimals, `1718000000123.456`. Fixed, so
 * that a stamp can be written into a pre-encoded packet in place (13 integer digits
 * hold every date from 2001 to 2286).
 */
export const STAMP_CHARS = 17

/** The stamp the packet is encoded with, overwritten before each send. */
export const STAMP_PLACEHOLDER = '0'.repeat(13) + '.000'

/** The wall clock in ms with sub-ms resolution, comparable across processes on one machine. */
export function wallClockMs (): number {
  return performance.timeOrigin + performance.now()
}

/** `ms` as a stamp of exactly `STAMP_CHARS` characters. */
export function formatStamp (ms: number): string {
  const stamp = ms.toFixed(3)
  if (stamp.length !== STAMP_CHARS) throw new RangeError(`wall clock ${stamp} does not fit a ${STAMP_CHARS}-character stamp`)
  return stamp
}

/**
 * Writes send stamps into a pre-encoded PUBLISH packet in place: the offset of the
 * placeholder is found once, then each `stamp()` rewrites its 17 bytes.
 */
export class SendStamper {
  readonly #packet: Buffer
  readonly #at: number

  /** @param packet a PUBLISH whose payload has `"sentat":"<STAMP_PLACEHOLDER>"` exactly once */
  constructor (packet: Buffer) {
    const needle = Buffer.from(`"${SEND_STAMP_ATTRIBUTE}":"${STAMP_PLACEHOLDER}"`)
    const at = packet.indexOf(needle)
    if (at < 0) throw new Error('send stamp placeholder not found in the PUBLISH packet')
    if (packet.indexOf(needle, at + 1) >= 0) throw new Error('send stamp placeholder found twice in the PUBLISH packet')
    this.#packet = packet
    this.#at = at + needle.length - 1 - STAMP_CHARS
  }

  /** Stamp the packet with the wall clock now; returns the stamp, in ms. */
  stamp (): number {
    const now = wallClockMs()
    this.#packet.write(formatStamp(now), this.#at, STAMP_CHARS, 'latin1')
    return now
  }
}

const STAMP_KEY = Buffer.from(`"${SEND_STAMP_ATTRIBUTE}":"`)

/** The send stamp in a received event's bytes (a PUBLISH body), or `undefined` when it has none. */
export function readStamp (bytes: Buffer): number | undefined {
  const at = bytes.indexOf(STAMP_KEY)
  if (at < 0) return undefined
  const start = at + STAMP_KEY.length
  const value = Number(bytes.toString('latin1', start, start + STAMP_CHARS))
  return Number.isFinite(value) ? value : undefined
}

/**
 * (send stamp, latency) pairs, in arrival order, in growable typed arrays: no object
 * per sample, and a summary over any send-time range after the fact.
 */
export class LatencyLog {
  #sentAt = new Float64Array(4096)
  #latency = new Float64Array(4096)
  #size = 0

  /** Samples recorded. */
  get size (): number {
    return this.#size
  }

  add (sentAtMs: number, latencyMs: number): void {
    if (this.#size === this.#sentAt.length) {
      const sentAt = new Float64Array(this.#size * 2)
      sentAt.set(this.#sentAt)
      this.#sentAt = sentAt
      const latency = new Float64Array(this.#size * 2)
      latency.set(this.#latency)
      this.#latency = latency
    }
    this.#sentAt[this.#size] = sentAtMs
    this.#latency[this.#size] = latencyMs
    this.#size++
  }

  /** Percentiles over the samples sent in [`fromMs`, `toMs`), by nearest rank. */
  summary (fromMs: number, toMs: number): LatencySummary {
    const picked: number[] = []
    for (let i = 0; i < this.#size; i++) {
      const sentAt = this.#sentAt[i] ?? Number.NaN
      if (sentAt >= fromMs && sentAt < toMs) picked.push(this.#latency[i] ?? Number.NaN)
    }
    return summarize(picked)
  }
}

/** p50, p99 and max of `latencies` (ms), nearest-rank; all 0 when there are none. */
export function summarize (latencies: readonly number[]): LatencySummary {
  const sorted = Float64Array.from(latencies).sort()
  const rank = (p: number): number => sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)] ?? 0
  return { count: sorted.length, p50Ms: rank(0.5), p99Ms: rank(0.99), maxMs: sorted[sorted.length - 1] ?? 0 }
}
