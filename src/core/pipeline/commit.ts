import type { Client, PublishPacket } from 'aedes'
import { CommitTimeoutError, type CommitResult, type Journal } from '../cluster/journal.js'
import { messageOf } from '../errors/base.js'
import { UnavailableError } from '../errors.js'
import { DISCARD_PREFIX } from '../reserved-topics.js'
import type { Attempt } from './attempt.js'

export interface CommitDeps {
  readonly journal: Journal
  /** Route an accepted packet to everything it goes to (aedes' publish), as `client`'s; `done` once it has. */
  readonly route: Route
}

/** aedes' publish, with the publishing client: a callback, not a promise, on the path of every acked message. */
export type Route = (packet: PublishPacket, client: Client | null, done: (err?: Error | null) => void) => void

/**
 * With `--redis`, what makes an acknowledgement a promise when an event is claimed
 * (idempotency). An accepted event that its publisher will be told about (QoS 1/2,
 * HTTP) is written to this node's journal together with its claim, one Lua step for the
 * events of a turn (`append`); then it is routed before the acknowledgement (`finish`):
 * other nodes' inboxes, subscribers' session queues, webhook jobs and its audit entry are
 * in Redis when the PUBACK, PUBREC or 202 goes out. Should this node die in between, the
 * journal entry is found and routed by the node that reaps it, while the publisher's
 * resent copy is a duplicate. A QoS 0 event only has its claim taken, batched the same way.
 */
export class Commit {
  constructor (private readonly deps: CommitDeps) {}

  /**
   * Whether `attempt` has anything to commit: a claim to take, or an acknowledgement to
   * earn (aedes sends a QoS 1 PUBACK before it routes; this routes first). Only a
   * claimed event needs a journal entry: without a claim, a node that dies before the
   * ack leaves a publisher that sends the event again, and the copy is routed again.
   */
  needed (attempt: Attempt): boolean {
    return attempt.claimed !== undefined || attempt.acked
  }

  /** Whether `attempt` is written to the journal: an event that will be acked, with a claim the journal holds for it. */
  journaled (attempt: Attempt): boolean {
    return attempt.claimed !== undefined
  }

  /** Take the claim and write the entry; `done` gets an `UnavailableError` when Redis refused or did not answer within `redis.outageHoldMs`. */
  append (attempt: Attempt, done: (err: UnavailableError | undefined, result: CommitResult | undefined) => void): void {
    this.deps.journal.commit(attempt.claimed, attempt.acked ? attempt : undefined, (err, result) => {
      if (err === undefined) {
        done(undefined, result)
        return
      }
      // not acked: the publisher sends it again. An entry Redis wrote after all is routed by a later sweep
      done(new UnavailableError(`${err instanceof CommitTimeoutError ? err.message : `redis refused the event's commit: ${messageOf(err)}`}; it was not acked`, { cause: err }), undefined)
    })
  }

  /**
   * Route the event, wait for the durable work its handlers started (`keepUntil`), let
   * its journal entry go (if it has one), then turn `packet` into one that goes nowhere:
   * aedes publishes the packet it acknowledges, and this one has been routed already.
   * `done` gets the error that kept it from being routed, if any.
   */
  finish (packet: PublishPacket, attempt: Attempt, entry: string | undefined, done: (err?: unknown) => void): void {
    this.deps.route(packet, attempt.source, (err) => {
      if (err !== undefined && err !== null) {
        done(err)
        return
      }
      const kept = attempt.kept
      if (kept === undefined) {
        this.#finished(packet, entry)
        done()
        return
      }
      Promise.all(kept).then(() => {
        this.#finished(packet, entry)
        done()
      }, done)
    })
  }

  #finished (packet: PublishPacket, entry: string | undefined): void {
    if (entry !== undefined) this.deps.journal.complete(entry)
    packet.topic = DISCARD_PREFIX + packet.topic
    packet.retain = false
  }
}
