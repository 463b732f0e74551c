/** One row of an outbox table: an event the application wrote in the transaction that changed its aggregate. */
export interface OutboxRow {
  /** The row's id, as text: the CloudEvent's `id`, the same at every attempt. */
  readonly id: string
  readonly aggregateType: string
  /** The CloudEvent's `subject` and `partitionkey`. */
  readonly aggregateId: string
  /** The CloudEvent's `type`. */
  readonly eventType: string
  /** The CloudEvent's `data`. */
  readonly payload: unknown
  /** The CloudEvent's `time`. */
  readonly createdAt: Date
  /** Failed attempts so far. */
  readonly retryCount: number
}

/** What to claim: rows not published, tried fewer than `maxAttempts` times, oldest first. */
export interface ClaimRequest {
  /** At most this many rows. */
  readonly limit: number
  readonly maxAttempts: number
  /** Rows to leave alone this time (they wait for their retry); they still hold back their aggregate's later rows. */
  readonly exclude: readonly string[]
}

/** How the attempts of a claimed batch ended; rows in neither list were not attempted and stay as they were. */
export interface BatchOutcome {
  /** Accepted by the broker (or answered as duplicates of events it had accepted): mark them published. */
  readonly published: readonly string[]
  /** Refused or unanswered: count the attempt and keep why. */
  readonly failed: ReadonlyArray<{ readonly id: string, readonly error: string }>
}

/** Rows held for the relay until `complete` or `abandon`: no other relay gets them meanwhile. */
export interface OutboxBatch {
  /**
   * In the order to publish them. A row of an aggregate comes only when every earlier
   * row of that aggregate still to publish is in the same batch, before it.
   */
  readonly rows: readonly OutboxRow[]
  /** Record the outcome and let the rows go (one transaction: all of it or none). */
  complete: (outcome: BatchOutcome) => Promise<void>
  /** Let the rows go unchanged. */
  abandon: (err?: Error) => Promise<void>
}

/**
 * Where an outbox relay reads its rows: `postgresOutbox()`, or any store that can
 * hand out batches no other relay gets at the same time and record their outcome.
 */
export interface OutboxSource {
  /** Claim a batch, or `undefined` when there is nothing to publish now. */
  claim: (request: ClaimRequest) => Promise<OutboxBatch | undefined>
}
