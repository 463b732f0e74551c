import { LRUCache } from 'lru-cache'

/** Keys (client ids, addresses) whose last line is remembered; beyond it the least recently seen may log again at once. */
const TRACKED_KEYS = 10_000

interface Slot {
  /** When the last line for this key was written. */
  at: number
  /** Lines not written since then. */
  suppressed: number
}

/**
 * At most one log line per key (a client id, an address) per interval. A client can
 * trigger warn lines by misbehaving (refused logins, denied publishes, rejected events,
 * dropped messages); one line per occurrence would let it flood the log and slow the
 * broker for everybody, so the rest of an interval's lines are counted and the next line
 * says how many were suppressed. Mosquitto logs once per connection event for the same
 * reason, never once per message.
 */
export class LogSampler {
  readonly #intervalMs: number
  readonly #slots = new LRUCache<string, Slot>({ max: TRACKED_KEYS })

  /** @param intervalMs at most one line per key per this many ms; 0 logs every line */
  constructor (intervalMs: number) {
    this.#intervalMs = intervalMs
  }

  /**
   * Whether a line for `key` may be written now. Returns the number of lines suppressed
   * since the last one written (0 or more) when it may, `undefined` when it may not (the
   * line is counted as suppressed).
   */
  take (key: string, now = Date.now()): number | undefined {
    if (this.#intervalMs === 0) return 0
    const slot = this.#slots.get(key)
    if (slot === undefined) {
      this.#slots.set(key, { at: now, suppressed: 0 })
      return 0
    }
    if (now - slot.at < this.#intervalMs) {
      slot.suppressed++
      return undefined
    }
    const suppressed = slot.suppressed
    slot.at = now
    slot.suppressed = 0
    return suppressed
  }
}
