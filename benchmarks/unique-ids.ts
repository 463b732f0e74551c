/**
 * Unique CloudEvent ids for the load generator, stamped into its pre-encoded
 * PUBLISH packets in place, so that a publisher still writes one Buffer over and
 * over and nothing is encoded or allocated per event.
 *
 * An id is `<run>-4c1d-4f7e-<publisher>-<counter>`, 36 ASCII characters like
 * `EVENT_ID`, so the payload keeps the same length and the same notes:
 *
 * - `run`: 8 lower-case hex digits drawn once per load generator process, so that
 *   two runs (rounds, brokers, a store that outlives one run) never share an id;
 * - `publisher`: the publisher's index, 4 decimal digits, so that two publishers
 *   never produce the same id;
 * - `counter`: the event's sequence number at that publisher, 12 decimal digits;
 *   the only bytes rewritten before each write.
 *
 * ce-broker keys duplicates on `source` + `id` and requires only a non-empty string
 * as `id` (CloudEvents 1.0); the shape is a UUID's so it reads like a real one.
 */
import { randomBytes } from 'node:crypto'

/** Decimal digits of the publisher index. */
const PUBLISHER_DIGITS = 4
/** Decimal digits of the per-publisher counter: 10^12 events, hours at any rate this machine reaches. */
const COUNTER_DIGITS = 12
const ASCII_ZERO = 0x30

/** 8 lower-case hex digits naming one load generator run. */
export function runTag (): string {
  return randomBytes(4).toString('hex')
}

/** The id of `publisher`'s events in run `run`, counter digits all zero (what the packet is encoded with). */
export function idTemplate (run: string, publisher: number): string {
  if (!/^[0-9a-f]{8}$/.test(run)) throw new RangeError(`run tag must be 8 lower-case hex digits, got ${JSON.stringify(run)}`)
  if (!Number.isInteger(publisher) || publisher < 0 || publisher >= 10 ** PUBLISHER_DIGITS) {
    throw new RangeError(`publisher index must be an integer in [0, ${10 ** PUBLISHER_DIGITS}), got ${publisher}`)
  }
  return `${run}-4c1d-4f7e-${String(publisher).padStart(PUBLISHER_DIGITS, '0')}-${'0'.repeat(COUNTER_DIGITS)}`
}

/**
 * Numbers the events of one publisher's write buffer: `burst` is copies of `packet`,
 * a PUBLISH whose payload has `"id":"<template>"`. The offsets of the counter digits
 * in each copy are found once; `stamp()` then rewrites only those bytes.
 */
export class IdStamper {
  readonly #burst: Buffer
  /** Where each packet's counter digits start in `burst`. */
  readonly #offsets: readonly number[]
  #next = 0

  constructor (burst: Buffer, packet: Buffer, template: string) {
    // the id with its key and quotes: the template alone could in principle also occur elsewhere
    const needle = Buffer.from(`"id":${JSON.stringify(template)}`)
    const at = packet.indexOf(needle)
    if (at < 0) throw new Error(`id ${template} not found in the PUBLISH packet`)
    if (packet.indexOf(needle, at + 1) >= 0) throw new Error(`id ${template} found twice in the PUBLISH packet`)
    const packets = burst.length / packet.length
    if (!Number.isInteger(packets)) throw new Error(`burst of ${burst.length} bytes is not whole packets of ${packet.length}`)
    // the counter is the id's last digits, just before its closing quote
    const digitsAt = at + needle.length - 1 - COUNTER_DIGITS
    const offsets = Array.from({ length: packets }, (_, i) => i * packet.length + digitsAt)
    for (const offset of offsets) {
      const start = offset - digitsAt
      if (!burst.subarray(start, start + packet.length).equals(packet)) throw new Error(`burst does not hold copies of the packet (at byte ${start})`)
    }
    this.#burst = burst
    this.#offsets = offsets
  }

  /** Events numbered so far: the next `stamp()` starts at this number. */
  get stamped (): number {
    return this.#next
  }

  /**
   * Give the burst's packets the next counters. Only while no write of the burst is
   * pending: the bytes are rewritten in place.
   */
  stamp (): void {
    this.stampRange(0, this.#offsets.length)
  }

  /**
   * Give packets `first` to `first + count - 1` of the burst the next counters (a ring of
   * packets written a stretch at a time). Only while no write of those packets is pending.
   */
  stampRange (first: number, count: number): void {
    const burst = this.#burst
    const offsets = this.#offsets
    let n = this.#next
    if (first < 0 || count < 0 || first + count > offsets.length) throw new RangeError(`packets ${first}..${first + count - 1} are not in a burst of ${offsets.length}`)
    if (n + count > 10 ** COUNTER_DIGITS) throw new RangeError(`more than 10^${COUNTER_DIGITS} events from one publisher`)
    for (let i = first; i < first + count; i++) {
      const offset = offsets[i] ?? 0
      // right to left, all digits: the counter is below 2^53, so % and / stay exact
      let value = n++
      for (let at = offset + COUNTER_DIGITS - 1; at >= offset; at--) {
        const digit = value % 10
        burst[at] = ASCII_ZERO + digit
        value = (value - digit) / 10
      }
    }
    this.#next = n
  }
}
