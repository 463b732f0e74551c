import { EventRejectedError, PublishUnansweredError } from './errors.js'
import type { EventOptions } from './event.js'
import type { Published } from './publisher.js'
import type { BatchOutcome, OutboxRow, OutboxSource } from './outbox-source.js'

/** What the relay needs of a publisher: `createPublisher()`'s, untyped (rows carry any type). */
export interface RelayPublisher {
  publish: (type: string, data: unknown, options: EventOptions) => Promise<Published>
  /** Read before each batch: while the broker is away the relay claims nothing and waits. */
  readonly client: { readonly connected: boolean }
}

/** A pino logger fits; the relay logs nothing without one. */
export interface OutboxLogger {
  debug: (fields: object, message: string) => void
  info: (fields: object, message: string) => void
  warn: (fields: object, message: string) => void
}

export interface OutboxRelayOptions {
  readonly publisher: RelayPublisher
  /** Where the rows are: `postgresOutbox({ pool, table })`. */
  readonly source: OutboxSource
  /** Rows claimed per batch (default 100). */
  readonly batchSize?: number
  /** How long an idle relay waits before it looks again, in ms (default 1 000). */
  readonly pollIntervalMs?: number
  /** Attempts a row gets before it is left for a human, its `last_error` saying why (default 10). */
  readonly maxAttempts?: number
  /**
   * Waits after failures, doubling from `initialMs` to at most `maxMs` (defaults 500 and
   * 30 000): between batches while the broker is away or a batch failed, and before a
   * refused or unanswered row is tried again.
   */
  readonly backoff?: { readonly initialMs?: number, readonly maxMs?: number }
  /** Called with each error that failed a batch (the database, mostly); the relay waits and goes on. */
  readonly onError?: (err: Error) => void
  readonly log?: OutboxLogger
}

/** What one batch did. */
export interface BatchResult {
  /** Rows claimed. */
  readonly claimed: number
  /** Rows marked published: accepted now, or answered as duplicates. */
  readonly published: number
  /** Of those, the ones the broker had accepted before (a relay died before it could mark them). */
  readonly duplicates: number
  /** Rows the broker refused (or the relay, for an empty `event_type`): `retry_count` counted, `last_error` = the reason and field errors. */
  readonly rejected: number
  /** Rows no answer came for (`publish_unanswered`) or that could not be sent: counted like refusals. */
  readonly failed: number
  /** Rows that reached `maxAttempts` in this batch: no relay tries them again. */
  readonly givenUp: number
  /** Rows left untouched because an earlier row of their aggregate failed in this batch. */
  readonly held: number
  /** The publisher was not connected: nothing was claimed. */
  readonly offline: boolean
}

/** Counts since the relay was created. */
export interface OutboxRelayStats {
  readonly batches: number
  readonly failedBatches: number
  readonly published: number
  readonly duplicates: number
  readonly rejected: number
  readonly failed: number
  readonly givenUp: number
}

export interface OutboxRelay {
  /** Run batches until `stop()`: at once while rows come, every `pollIntervalMs` when idle, with backoff after failures. */
  start: () => void
  /** Stop after the batch in hand is recorded. The publisher and the pool stay open: they are the caller's. */
  stop: () => Promise<void>
  /** One batch, now (what `start` runs in a loop). */
  runOnce: () => Promise<BatchResult>
  stats: () => OutboxRelayStats
}

const DEFAULTS = { batchSize: 100, pollIntervalMs: 1_000, maxAttempts: 10, initialMs: 500, maxMs: 30_000 }
/** Rows waiting for their retry that one relay remembers; beyond it the oldest are forgotten (tried sooner, no harm). */
const MAX_WAITING_ROWS = 10_000
/** `last_error` is cut to this many characters. */
const MAX_ERROR_CHARS = 2_000

type RowOutcome =
  | { readonly row: OutboxRow, readonly kind: 'published', readonly duplicate: boolean }
  | { readonly row: OutboxRow, readonly kind: 'rejected' | 'failed', readonly error: string }

/**
 * A relay that drains an outbox into the broker: it claims a batch of rows, publishes
 * each with the row id as the event id, and marks it published only once the broker
 * accepted it (or answered that it had already). A row published but not yet marked
 * when a relay dies is published again and answered as a duplicate, which the broker
 * delivers to no one within its idempotency window.
 */
export function createOutboxRelay (options: OutboxRelayOptions): OutboxRelay {
  const settings = settingsOf(options)
  const { publisher, source, log } = options
  const totals = { batches: 0, failedBatches: 0, published: 0, duplicates: 0, rejected: 0, failed: 0, givenUp: 0 }
  // row id → when this relay may try it again; other relays and a restart do not know of it
  const waiting = new Map<string, number>()
  let running = false
  let loop: Promise<void> | undefined
  let wake: (() => void) | undefined

  function delayFor (attempt: number): number {
    const full = Math.min(settings.maxMs, settings.initialMs * 2 ** Math.min(attempt - 1, 30))
    // half of it random, so relays that failed together do not come back together
    return Math.round(full / 2 + Math.random() * full / 2)
  }

  function waitingRows (): string[] {
    const now = Date.now()
    for (const [id, until] of waiting) if (until <= now) waiting.delete(id)
    return [...waiting.keys()]
  }

  async function runOnce (): Promise<BatchResult> {
    if (!publisher.client.connected) return { ...EMPTY, offline: true }
    const batch = await source.claim({ limit: settings.batchSize, maxAttempts: settings.maxAttempts, exclude: waitingRows() })
    if (batch === undefined || batch.rows.length === 0) {
      await batch?.complete({ published: [], failed: [] })
      return EMPTY
    }
    const outcomes = await publishInOrder(batch.rows, publisher)
    const outcome: BatchOutcome = {
      published: outcomes.flatMap((o) => o.kind === 'published' ? [o.row.id] : []),
      failed: outcomes.flatMap((o) => o.kind === 'published' ? [] : [{ id: o.row.id, error: o.error.slice(0, MAX_ERROR_CHARS) }])
    }
    await batch.complete(outcome)
    return tally(batch.rows.length, outcomes)
  }

  /** Count and log a recorded batch; rows that failed wait before this relay tries them again. */
  function tally (claimed: number, outcomes: readonly RowOutcome[]): BatchResult {
    let published = 0; let duplicates = 0; let rejected = 0; let failed = 0; let givenUp = 0
    for (const o of outcomes) {
      if (o.kind === 'published') {
        published++
        if (o.duplicate) duplicates++
        continue
      }
      if (o.kind === 'rejected') rejected++
      else failed++
      const attempts = o.row.retryCount + 1
      const fields = { rowId: o.row.id, eventType: o.row.eventType, aggregateId: o.row.aggregateId, attempts, error: o.error }
      if (attempts >= settings.maxAttempts) {
        givenUp++
        log?.warn(fields, 'outbox row given up: no relay tries it again until its retry_count is lowered')
        continue
      }
      if (waiting.size >= MAX_WAITING_ROWS) waiting.delete(waiting.keys().next().value ?? '')
      waiting.set(o.row.id, Date.now() + delayFor(attempts))
      if (o.kind === 'rejected') log?.warn(fields, 'outbox row refused by the broker')
    }
    totals.batches++
    totals.published += published
    totals.duplicates += duplicates
    totals.rejected += rejected
    totals.failed += failed
    totals.givenUp += givenUp
    const result = { claimed, published, duplicates, rejected, failed, givenUp, held: claimed - outcomes.length, offline: false }
    log?.debug(result, 'outbox batch recorded')
    return result
  }

  async function sleep (ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms)
      function done (): void {
        clearTimeout(timer)
        wake = undefined
        resolve()
      }
      wake = done
    })
  }

  async function run (): Promise<void> {
    let failures = 0
    while (running) {
      let pause: number
      try {
        const result = await runOnce()
        // unanswered with nothing published: the broker went away mid-batch
        const trouble = result.offline || (result.failed > 0 && result.published === 0)
        failures = trouble ? failures + 1 : 0
        pause = trouble ? delayFor(failures) : result.claimed === 0 ? settings.pollIntervalMs : 0
        if (trouble && failures === 1) log?.warn({ offline: result.offline, failed: result.failed, retryInMs: pause }, 'outbox relay waits for the broker')
      } catch (raw: unknown) {
        const err = raw instanceof Error ? raw : new Error(String(raw))
        failures++
        totals.failedBatches++
        pause = delayFor(failures)
        // the first failure of a run is a warning, the ones after it while it lasts are details
        if (failures === 1) log?.warn({ err, retryInMs: pause }, 'outbox batch failed')
        else log?.debug({ err, failures, retryInMs: pause }, 'outbox batch failed again')
        options.onError?.(err)
      }
      if (pause > 0 && running) await sleep(pause)
    }
  }

  return {
    runOnce,
    start () {
      if (running) return
      running = true
      log?.info({ batchSize: settings.batchSize, maxAttempts: settings.maxAttempts }, 'outbox relay started')
      loop = run()
    },
    async stop () {
      running = false
      wake?.()
      await loop
      loop = undefined
    },
    stats: () => ({ ...totals })
  }
}

const EMPTY: BatchResult = { claimed: 0, published: 0, duplicates: 0, rejected: 0, failed: 0, givenUp: 0, held: 0, offline: false }

/**
 * Publish a batch keeping each aggregate's order: the rows of one aggregate one after
 * the other, the first failure leaving its later rows for a later batch (an event is
 * never delivered before an earlier one of its aggregate); different aggregates at once.
 */
async function publishInOrder (rows: readonly OutboxRow[], publisher: RelayPublisher): Promise<RowOutcome[]> {
  const chains = new Map<string, OutboxRow[]>()
  for (const row of rows) {
    // NUL cannot occur in PostgreSQL text, so the key cannot be faked by an id holding the separator
    const key = `${row.aggregateType}\u0000${row.aggregateId}`
    const chain = chains.get(key)
    if (chain === undefined) chains.set(key, [row])
    else chain.push(row)
  }
  const outcomes: RowOutcome[] = []
  await Promise.all([...chains.values()].map(async (chain) => {
    for (const row of chain) {
      const outcome = await publishRow(row, publisher)
      outcomes.push(outcome)
      if (outcome.kind !== 'published') return
    }
  }))
  return outcomes
}

async function publishRow (row: OutboxRow, publisher: RelayPublisher): Promise<RowOutcome> {
  if (row.eventType === '') return { row, kind: 'rejected', error: 'invalid_row: event_type is empty' }
  try {
    const { duplicate } = await publisher.publish(row.eventType, row.payload, {
      id: row.id,
      // an unreadable created_at leaves the time to the publisher (now) rather than failing the row
      ...(Number.isNaN(row.createdAt.getTime()) ? {} : { time: row.createdAt }),
      ...(row.aggregateId === '' ? {} : { subject: row.aggregateId, extensions: { partitionkey: row.aggregateId } })
    })
    return { row, kind: 'published', duplicate }
  } catch (err: unknown) {
    if (err instanceof EventRejectedError) {
      const fields = err.errors.map((e) => e.path === '' ? e.message : `${e.path}: ${e.message}`).join('; ')
      return { row, kind: 'rejected', error: fields === '' ? err.reason : `${err.reason}: ${fields}` }
    }
    if (err instanceof PublishUnansweredError) return { row, kind: 'failed', error: `publish_unanswered: ${err.message}` }
    return { row, kind: 'failed', error: `publish_failed: ${err instanceof Error ? err.message : String(err)}` }
  }
}

function settingsOf (options: OutboxRelayOptions): typeof DEFAULTS {
  const settings = {
    batchSize: options.batchSize ?? DEFAULTS.batchSize,
    pollIntervalMs: options.pollIntervalMs ?? DEFAULTS.pollIntervalMs,
    maxAttempts: options.maxAttempts ?? DEFAULTS.maxAttempts,
    initialMs: options.backoff?.initialMs ?? DEFAULTS.initialMs,
    maxMs: options.backoff?.maxMs ?? DEFAULTS.maxMs
  }
  const check = (name: string, value: number, min: number, max: number): void => {
    if (!Number.isInteger(value) || value < min || value > max) throw new RangeError(`${name} must be an integer from ${min} to ${max}, got ${String(value)}`)
  }
  check('batchSize', settings.batchSize, 1, 10_000)
  check('pollIntervalMs', settings.pollIntervalMs, 1, 3_600_000)
  check('maxAttempts', settings.maxAttempts, 1, 1_000_000)
  check('backoff.initialMs', settings.initialMs, 1, 3_600_000)
  check('backoff.maxMs', settings.maxMs, settings.initialMs, 3_600_000)
  return settings
}
