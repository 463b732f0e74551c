import { publishInOrder, type RelayPublisher, type RowOutcome } from './outbox-publish.js'
import type { BatchOutcome, OutboxSource } from './outbox-source.js'

export type { RelayPublisher } from './outbox-publish.js'

/** A pino logger fits; the relay logs nothing without one. */
export interface OutboxLogger {
  debug: (fields: object, message: string) => void
  info: (fields: object, message: string) => void
  warn: (fields: object, message: string) => void
}

export interface OutboxRelayOptions {
  /** A publisher of `createPublisher()`; every relay of one outbox must have the same `source`, the idempotency key's half. */
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
  /** Called with each error that failed a batch (the database, mostly); the relay waits and goes on. Default: none. */
  readonly onError?: (err: Error) => void
  /** Where the relay's log lines go (README, Outbox relay). Default: nowhere. */
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
  const waits = new RetryWaits(settings)
  const pause = new Pause()
  let running = false
  let loop: Promise<void> | undefined

  async function runOnce (): Promise<BatchResult> {
    if (!publisher.client.connected) return { ...EMPTY, offline: true }
    const batch = await source.claim({ limit: settings.batchSize, maxAttempts: settings.maxAttempts, exclude: waits.rows() })
    if (batch === undefined || batch.rows.length === 0) {
      await batch?.complete({ published: [], failed: [] })
      return EMPTY
    }
    const outcomes = await publishInOrder(batch.rows, publisher)
    await batch.complete(outcomeOf(outcomes))
    const result = tally(batch.rows.length, outcomes, settings.maxAttempts, waits, log)
    totals.batches++
    for (const key of ['published', 'duplicates', 'rejected', 'failed', 'givenUp'] as const) totals[key] += result[key]
    return result
  }

  /** A failed batch: counted, logged (the first of a run as a warning), told to `onError`. */
  function failedBatch (raw: unknown, failures: number, retryInMs: number): void {
    const err = raw instanceof Error ? raw : new Error(String(raw))
    totals.failedBatches++
    if (failures === 1) log?.warn({ err, retryInMs }, 'outbox batch failed')
    else log?.debug({ err, failures, retryInMs }, 'outbox batch failed again')
    try {
      options.onError?.(err)
    } catch (thrown: unknown) {
      // the caller's handler failing must not stop the relay; it is said once here
      log?.warn({ err: thrown }, 'outbox relay onError threw')
    }
  }

  async function run (): Promise<void> {
    let failures = 0
    while (running) {
      let ms: number
      try {
        const result = await runOnce()
        // unanswered with nothing published: the broker went away mid-batch
        const trouble = result.offline || (result.failed > 0 && result.published === 0)
        failures = trouble ? failures + 1 : 0
        ms = trouble ? waits.delayFor(failures) : result.claimed === 0 ? settings.pollIntervalMs : 0
        if (trouble && failures === 1) log?.warn({ offline: result.offline, failed: result.failed, retryInMs: ms }, 'outbox relay waits for the broker')
      } catch (err: unknown) {
        failures++
        ms = waits.delayFor(failures)
        failedBatch(err, failures, ms)
      }
      if (ms > 0 && running) await pause.for(ms)
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
      pause.wake()
      await loop
      loop = undefined
    },
    stats: () => ({ ...totals })
  }
}

function outcomeOf (outcomes: readonly RowOutcome[]): BatchOutcome {
  return {
    published: outcomes.flatMap((o) => o.kind === 'published' ? [o.row.id] : []),
    failed: outcomes.flatMap((o) => o.kind === 'published' ? [] : [{ id: o.row.id, error: o.error.slice(0, MAX_ERROR_CHARS) }])
  }
}

/** Count and log a recorded batch; rows that failed wait before this relay tries them again. */
function tally (claimed: number, outcomes: readonly RowOutcome[], maxAttempts: number, waits: RetryWaits, log: OutboxLogger | undefined): BatchResult {
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
    if (attempts >= maxAttempts) {
      givenUp++
      log?.warn(fields, 'outbox row given up: no relay tries it again until its retry_count is lowered')
      continue
    }
    waits.hold(o.row.id, attempts)
    if (o.kind === 'rejected') log?.warn(fields, 'outbox row refused by the broker')
  }
  const result = { claimed, published, duplicates, rejected, failed, givenUp, held: claimed - outcomes.length, offline: false }
  log?.debug(result, 'outbox batch recorded')
  return result
}

/** The rows one relay holds back until their retry; other relays and a restart do not know of them. */
class RetryWaits {
  readonly #until = new Map<string, number>()
  readonly #initialMs: number
  readonly #maxMs: number

  constructor (settings: { readonly initialMs: number, readonly maxMs: number }) {
    this.#initialMs = settings.initialMs
    this.#maxMs = settings.maxMs
  }

  /** The wait after the `attempt`-th failure in a row: doubling, bounded, half of it random so relays that failed together come back apart. */
  delayFor (attempt: number): number {
    const full = Math.min(this.#maxMs, this.#initialMs * 2 ** Math.min(attempt - 1, 30))
    return Math.round(full / 2 + Math.random() * full / 2)
  }

  hold (id: string, attempts: number): void {
    if (this.#until.size >= MAX_WAITING_ROWS) this.#until.delete(this.#until.keys().next().value ?? '')
    this.#until.set(id, Date.now() + this.delayFor(attempts))
  }

  /** The rows still waiting; the others are forgotten. */
  rows (): string[] {
    const now = Date.now()
    for (const [id, until] of this.#until) if (until <= now) this.#until.delete(id)
    return [...this.#until.keys()]
  }
}

/** A wait that `stop()` can cut short. */
class Pause {
  #wake: (() => void) | undefined

  async for (ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer)
        this.#wake = undefined
        resolve()
      }
      const timer = setTimeout(done, ms)
      this.#wake = done
    })
  }

  wake (): void {
    this.#wake?.()
  }
}

const EMPTY: BatchResult = { claimed: 0, published: 0, duplicates: 0, rejected: 0, failed: 0, givenUp: 0, held: 0, offline: false }

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
