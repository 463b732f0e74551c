import { addressKey } from '../../src/core/index.js'
import type { Refuse } from './credentials.js'
import type { AuthState } from './state.js'

/** Password checks running at once (each an scrypt on libuv's pool); beyond it CONNECTs get CONNACK 3 until one ends. */
const MAX_CONCURRENT_CHECKS = 16

/**
 * How many logins are checked at once, overall and per address. An address with
 * `max` failures within the window is refused unchecked (CONNACK 5); checks still
 * running count against that limit too, so parallel guesses cannot all get through
 * before their failures are counted (CONNACK 3, try again).
 */
export class LoginLimiter {
  readonly #state: AuthState
  readonly #max: number
  /** Checks running per address: taken before the first await, so parallel guesses see each other. */
  readonly #pending = new Map<string, number>()
  #checking = 0

  constructor (state: AuthState, max: number) {
    this.#state = state
    this.#max = max
  }

  /** Run `check` for a CONNECT from `remoteAddress` if the limits let it, or throw what `refuse` makes. */
  async check<T> (remoteAddress: string | undefined, refuse: Refuse, check: () => Promise<T>): Promise<T> {
    const address = addressKey(remoteAddress)
    if (this.#checking >= MAX_CONCURRENT_CHECKS) throw refuse(3, 'busy', 'too many logins are being checked: try again')
    const running = address === undefined ? 0 : this.#pending.get(address) ?? 0
    this.#checking++
    if (address !== undefined) this.#pending.set(address, running + 1)
    try {
      const failed = address === undefined ? 0 : await this.#state.failures(address)
      if (failed >= this.#max) throw refuse(5, 'rate_limited', `too many failed logins from ${remoteAddress ?? ''}: try again later`)
      if (failed + running >= this.#max) throw refuse(3, 'busy', 'logins from this address are being checked: try again')
      return await check()
    } finally {
      this.#checking--
      if (address !== undefined) this.#release(address)
    }
  }

  #release (address: string): void {
    const left = (this.#pending.get(address) ?? 1) - 1
    if (left === 0) this.#pending.delete(address)
    else this.#pending.set(address, left)
  }
}
