import { UnavailableError } from '../errors.js'
import type { Logger } from '../logger.js'

export interface OutageHoldOptions {
  /** Whether publishes can be stored and routed now (false while Redis is unreachable). */
  readonly available: () => boolean
  /** Resolves true once they can again, false after `timeoutMs`. */
  readonly whenAvailable: (timeoutMs: number) => Promise<boolean>
  /** `redis.outageHoldMs`: how long a client's publish waits for `available` before the client is disconnected. */
  readonly holdMs: number
  readonly log: Logger
}

/** What the line of a publish given up says about it. */
export interface HeldPublish {
  readonly clientId: string | undefined
  readonly topic: string
  readonly qos: 0 | 1 | 2
}

/** How publishes wait out a Redis outage (cluster mode). */
export interface OutageHold {
  readonly available: () => boolean
  /**
   * Hold a client's publish until Redis is back, then `admit` it; past `holdMs`, `fail`
   * gets the refusal that disconnects the client.
   */
  readonly hold: (held: HeldPublish, admit: () => void, fail: (err: Error) => void) => void
  /** The refusal of a broker-side publish (HTTP, replay, `broker.publish`) during an outage. */
  readonly refusal: () => UnavailableError
}

export function createOutageHold (options: OutageHoldOptions): OutageHold {
  const { holdMs, log } = options

  /**
   * While Redis is unreachable a publish waits here, not acked (aedes writes PUBACK and
   * PUBREC only after its authorizePublish hook), and the client's further packets wait
   * behind it. Past `holdMs` the client is disconnected: it keeps its QoS 1/2 messages
   * and sends them again once it reconnects; a QoS 0 message is lost.
   */
  function hold (held: HeldPublish, admit: () => void, fail: (err: Error) => void): void {
    options.whenAvailable(holdMs).then(function availableAgain (ok) {
      if (ok) {
        admit()
        return
      }
      // one of many during an outage, which is itself logged once
      log.debug({ clientId: held.clientId, topic: held.topic, qos: held.qos, holdMs }, 'publish not acked: redis still unreachable, client disconnected')
      fail(new UnavailableError(`redis has been unreachable for redis.outageHoldMs (${holdMs} ms); the publish was not acked`))
    }, fail)
  }

  function refusal (): UnavailableError {
    // an HTTP sender is told at once (503, Retry-After) rather than held
    return new UnavailableError('redis is unreachable: the event was not accepted; send it again later')
  }

  return { available: options.available, hold, refusal }
}
