import { Counter, type Registry } from 'prom-client'
import type { RecordWriter } from './record.js'
import type { AuditSink } from './sinks.js'

type Sink = AuditSink['name'] | 'topic'

/** `ce_broker_audit_records_total`: plain numbers on the hot path, copied into prom-client at scrape time. */
export class AuditTally {
  readonly #counts = new Map<string, number>()

  constructor (registry: Registry) {
    const counts = this.#counts
    new Counter({
      name: 'ce_broker_audit_records_total',
      help: 'Audit records by sink (topic, file, stream) and result (written, failed)',
      labelNames: ['sink', 'result'] as const,
      registers: [registry],
      collect () {
        this.reset()
        for (const [key, n] of counts) {
          const [sink = '', result = ''] = key.split('\n')
          this.inc({ sink, result }, n)
        }
      }
    })
  }

  count (sink: Sink, result: 'written' | 'failed', n: number): void {
    const key = `${sink}\n${result}`
    this.#counts.set(key, (this.#counts.get(key) ?? 0) + n)
  }
}

interface Turn { readonly promise: Promise<void>, readonly resolve: () => void, readonly reject: (err: Error) => void }

/**
 * The records' lines go to the sinks once per event-loop turn, in one batch each (and
 * are let go of when there are no sinks): a publisher never waits for the audit's I/O
 * unless its acknowledgement asks to (`flushed`).
 */
export class TurnFlush {
  #flushing: Promise<void> = Promise.resolve()
  #scheduled = false
  /** Settles once the sinks have taken this turn's lines, rejecting when one did not (made only when asked for). */
  #turn: Turn | undefined
  readonly #flush = (): void => { this.flush() }

  constructor (
    private readonly records: RecordWriter,
    private readonly sinks: readonly AuditSink[],
    private readonly tally: AuditTally,
    private readonly reportError: (err: unknown, context: Readonly<Record<string, unknown>>) => void
  ) {}

  schedule (): void {
    if (this.#scheduled) return
    this.#scheduled = true
    setImmediate(this.#flush)
  }

  /**
   * This turn's flush, for an acknowledgement that waits for its audit entry
   * (`keepUntil`): a sink that could not write the lines fails it, so the event is not
   * acknowledged and its journal entry is finished again later, audit entry included.
   */
  flushed (): Promise<void> {
    if (this.#turn === undefined) {
      let resolve = (): void => {}
      let reject = (_err: Error): void => {}
      const promise = new Promise<void>((resolved, rejected) => { resolve = resolved; reject = rejected })
      // whoever waits for it hears of a failure; nobody waiting is no unhandled rejection (the sinks' errors are reported)
      promise.catch(() => {})
      this.#turn = { promise, resolve, reject }
    }
    this.schedule()
    return this.#turn.promise
  }

  flush (): void {
    this.#scheduled = false
    const waiting = this.#turn
    this.#turn = undefined
    const batch = this.records.take()
    const writes = batch.count > 0 ? this.sinks.map((sink) => this.#write(sink, batch)) : []
    const all = Promise.all(writes)
    if (writes.length > 0) this.#flushing = Promise.all([this.#flushing, all]).then(() => undefined)
    if (waiting !== undefined) {
      void all.then((done) => {
        if (done.every(Boolean)) waiting.resolve()
        else waiting.reject(new Error('an audit sink did not take the records of this turn'))
      })
    }
  }

  /** Flush what is left and wait for every write under way. */
  async drain (): Promise<void> {
    this.flush()
    await this.#flushing
  }

  /** Whether `sink` wrote every line of `batch`, with what it wrote counted. */
  async #write (sink: AuditSink, batch: ReturnType<RecordWriter['take']>): Promise<boolean> {
    const wrote = (written: number): boolean => {
      this.tally.count(sink.name, 'written', written)
      if (written < batch.count) this.tally.count(sink.name, 'failed', batch.count - written)
      return written === batch.count
    }
    try {
      return wrote(await sink.write(batch))
    } catch (err: unknown) {
      this.reportError(err, { sink: sink.name })
      return wrote(0)
    }
  }
}
