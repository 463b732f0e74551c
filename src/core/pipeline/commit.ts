import type { Client, PublishPacket } from 'aedes'
import { CommitTimeoutError, type CommitResult, type Journal } from '../cluster/journal.js'
import { messageOf } from '../errors/base.js'
import { UnavailableError } from '../errors.js'
import { DISCARD_PREFIX } from '../reserved-topics.js'
import type { Attempt } from './attempt.js'

export interface CommitDeps {
  readonly journal: Journal
  /** Route an accepted packet to everything it goes to (aedes' publish), as `client`'s; resolves once done. */
  readonly route: (packet: PublishPacket, client: Client | null) => Promise<void>
}

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
   * Whether `attempt` has anything to commit: a claim to take (and, for an event that
   * will be acked, the work it guards, which must be in Redis with it). An event without
   * a claim needs no journal: aedes routes it (inboxes, offline sessions, the
   * `published` hooks' durable work) before it acks, and should the node die in
   * between, the publisher's resent copy is routed again.
   */
  needed (attempt: Attempt): boolean {
    return attempt.claimed !== undefined
  }

  /** Take the claim and write the entry; rejects with `UnavailableError` when Redis does not answer within `redis.outageHoldMs`. */
  async append (attempt: Attempt): Promise<CommitResult> {
    try {
      return await this.deps.journal.commit(attempt.claimed, attempt.qos > 0 ? attempt : undefined)
    } catch (err: unknown) {
      // not acked: the publisher sends it again. An entry Redis wrote after all is routed by a later sweep
      throw new UnavailableError(`${err instanceof CommitTimeoutError ? err.message : `redis refused the event's commit: ${messageOf(err)}`}; it was not acked`, { cause: err })
    }
  }

  /**
   * Route the committed event, let its entry go, wait for the durable work its handlers
   * started (`keepUntil`), then turn `packet` into one that goes nowhere: aedes publishes
   * the packet it acknowledges, and this one has been routed already.
   */
  async finish (packet: PublishPacket, attempt: Attempt, entry: string): Promise<void> {
    await this.deps.route(packet, attempt.source)
    if (attempt.kept !== undefined) await Promise.all(attempt.kept)
    this.deps.journal.complete(entry)
    packet.topic = DISCARD_PREFIX + packet.topic
    packet.retain = false
  }
}
