import { Worker } from 'node:worker_threads'
import type { EventSummary } from '../../src/core/index.js'
import { errorOf, isWorkerMessage, itemSize, verdictOf, writeItem, type ChangeMessage, type CheckBatch, type Refusal, type WorkerSetup } from './protocol.js'
import type { RegistryChange } from './registry.js'

/** Checks one publish under the rule at `rule` in this thread: the event's summary, or throws the refusal. */
export type InlineCheck = (rule: number, topic: string, payload: Buffer) => EventSummary

/** What is told what an accepted event is, just before its check resolves (the publish attempt). */
export interface Describable {
  describe: (event: EventSummary) => void
}

export interface CheckPoolOptions {
  /** Worker threads to start (≥ 1). */
  readonly size: number
  readonly setup: WorkerSetup
  /** The same check in this thread: for batches in flight when a worker dies, and for everything once none is left. */
  readonly inline: InlineCheck
  /** Told each verdict as it settles: the accepted event's summary, or a refused one's and its reason. */
  readonly tally?: (event: EventSummary | undefined, reason: string | undefined) => void
  /** A worker died; the pool carries on with the others, then inline. */
  readonly onWorkerLost: (err: Error) => void
  /** The worker script; default `worker.js` next to this file. */
  readonly workerUrl?: URL
}

// the tests run the TypeScript sources (through tsx); the build runs the compiled .js
const WORKER_URL = new URL(import.meta.url.endsWith('.ts') ? './worker.ts' : './worker.js', import.meta.url)
/** A batch starts with room for this many payload bytes and doubles as needed. */
const FIRST_CAPACITY = 64 * 1024
/** A batch is sent as soon as it holds this many bytes or items, without waiting for the event-loop turn to end. */
const MAX_BATCH_BYTES = 1024 * 1024
const MAX_BATCH_ITEMS = 1024
/** Buffers of settled batches kept for the next ones: a fresh one is zero-filled. */
const MAX_SPARE_BUFFERS = 16

/** A batch's answer: the refused items by index, the accepted ones' summaries in order. */
interface Verdicts {
  readonly refused: readonly Refusal[]
  readonly accepted: readonly EventSummary[]
}

interface Item {
  readonly rule: number
  readonly topic: string
  /** The publish's own payload: re-checked inline if the batch's worker dies. */
  readonly payload: Buffer
  readonly target: Describable
  readonly resolve: () => void
  readonly reject: (err: Error) => void
}

/** Publishes collected during one event-loop turn, sent to one worker as one message. */
class Batch {
  readonly items: Item[] = []
  /** Items back to back (`writeItem`); `bytes` views `buffer`, which the worker reads. */
  buffer: SharedArrayBuffer
  bytes: Buffer
  used = 0
  worker: Worker | undefined
  /** Set once the worker (or the inline fallback) has answered. */
  verdicts: Verdicts | undefined

  constructor (readonly seq: number, buffer: SharedArrayBuffer) {
    this.buffer = buffer
    this.bytes = Buffer.from(buffer)
  }

  add (item: Item): void {
    const need = this.used + itemSize(item.topic, item.payload)
    if (need > this.bytes.length) {
      const grown = new SharedArrayBuffer(Math.max(need, this.bytes.length * 2))
      const bytes = Buffer.from(grown)
      this.bytes.copy(bytes, 0, 0, this.used)
      this.buffer = grown
      this.bytes = bytes
    }
    this.used = writeItem(this.bytes, this.used, item.rule, item.topic, item.payload)
    this.items.push(item)
  }

  get full (): boolean {
    return this.used >= MAX_BATCH_BYTES || this.items.length >= MAX_BATCH_ITEMS
  }
}

/**
 * Runs event checks on worker threads, so that JSON.parse and schema validation do
 * not take turns with MQTT on the broker's event loop. Publishes arriving in the same
 * event-loop turn travel as one batch (one copy into one transferred buffer, one
 * message each way); batches go to the workers in turn, and their verdicts are
 * settled strictly in the order the publishes arrived, whichever worker answers first.
 */
export class CheckPool {
  readonly #options: CheckPoolOptions
  #workers: Worker[]
  #turn = 0
  #seq = 0
  #open: Batch | undefined
  #flushScheduled = false
  /** Sent batches, oldest first; the head is settled as soon as its verdicts are in. */
  readonly #sent: Batch[] = []
  readonly #spare: SharedArrayBuffer[] = []
  #closed = false

  private constructor (options: CheckPoolOptions, workers: Worker[]) {
    this.#options = options
    this.#workers = workers
    for (const worker of workers) this.#watch(worker)
  }

  /** Start `size` workers; resolves once every one has compiled the schemas, rejects if any fails to. */
  static async start (options: CheckPoolOptions): Promise<CheckPool> {
    const workers: Worker[] = []
    try {
      for (let i = 0; i < options.size; i++) workers.push(spawn(options.workerUrl ?? WORKER_URL, options.setup))
      await Promise.all(workers.map(ready))
    } catch (err: unknown) {
      await Promise.all(workers.map(async (worker) => await worker.terminate()))
      throw err
    }
    return new CheckPool(options, workers)
  }

  /** Live workers. */
  get size (): number {
    return this.#workers.length
  }

  /**
   * Check a publish under rule index `rule`. Resolves when accepted (after `target`
   * was told the event), rejects with the refusal. With no worker left it checks
   * inline: describes and returns `undefined`, or throws.
   */
  check (rule: number, topic: string, payload: Buffer, target: Describable): Promise<void> | undefined {
    if (this.#workers.length === 0) {
      target.describe(this.#options.inline(rule, topic, payload))
      return undefined
    }
    return new Promise((resolve, reject) => {
      const batch = this.#open ?? this.#openBatch(itemSize(topic, payload))
      batch.add({ rule, topic, payload, target, resolve, reject })
      if (batch.full) this.#send()
    })
  }

  /**
   * Apply a registry change in every worker. The batch being filled goes first, under
   * the registry it was filled under; every batch after it is checked with the change.
   */
  broadcast (change: RegistryChange): void {
    this.#send()
    const message: ChangeMessage = { kind: 'change', change }
    for (const worker of this.#workers) worker.postMessage(message)
  }

  /** Settle what is in flight inline and stop the workers. */
  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    const workers = this.#workers
    this.#workers = []
    if (this.#open !== undefined) {
      this.#sent.push(this.#open)
      this.#open = undefined
    }
    for (const batch of this.#sent) batch.verdicts ??= this.#checkInline(batch)
    this.#settle()
    await Promise.all(workers.map(async (worker) => await worker.terminate()))
  }

  #openBatch (firstPayload: number): Batch {
    let buffer = this.#spare.pop()
    if (buffer === undefined || buffer.byteLength < firstPayload) buffer = new SharedArrayBuffer(Math.max(FIRST_CAPACITY, firstPayload))
    const batch = new Batch(this.#seq++, buffer)
    this.#open = batch
    if (!this.#flushScheduled) {
      this.#flushScheduled = true
      queueMicrotask(() => {
        this.#flushScheduled = false
        this.#send()
      })
    }
    return batch
  }

  #send (): void {
    const batch = this.#open
    if (batch === undefined) return
    this.#open = undefined
    this.#sent.push(batch)
    const worker = this.#workers[this.#turn++ % this.#workers.length]
    if (worker === undefined) {
      // every worker died since the batch was opened
      batch.verdicts = this.#checkInline(batch)
      this.#settle()
      return
    }
    batch.worker = worker
    const message: CheckBatch = { seq: batch.seq, count: batch.items.length, used: batch.used, bytes: batch.buffer }
    worker.postMessage(message)
  }

  #watch (worker: Worker): void {
    worker.on('message', (message: unknown) => {
      if (!isWorkerMessage(message) || message.type !== 'verdicts') return
      const batch = this.#sent.find((b) => b.seq === message.seq)
      if (batch === undefined || batch.verdicts !== undefined) return
      batch.verdicts = message
      this.#settle()
    })
    let failure: Error | undefined
    worker.on('error', (err: Error) => { failure = err })
    worker.on('exit', (code: number) => {
      if (this.#closed) return
      this.#workers = this.#workers.filter((w) => w !== worker)
      this.#options.onWorkerLost(failure ?? new Error(`validation worker exited with code ${code}`))
      for (const batch of this.#sent) {
        if (batch.worker === worker) batch.verdicts ??= this.#checkInline(batch)
      }
      this.#settle()
    })
  }

  /** Settle batches from the oldest while their verdicts are in. */
  #settle (): void {
    while (this.#sent.length > 0) {
      const batch = this.#sent[0]
      const verdicts = batch?.verdicts
      if (batch === undefined || verdicts === undefined) return
      this.#sent.shift()
      // keep ordinary buffers only: one grown for a huge payload is left to the GC
      if (this.#spare.length < MAX_SPARE_BUFFERS && batch.buffer.byteLength <= 2 * MAX_BATCH_BYTES) this.#spare.push(batch.buffer)
      const { refused, accepted } = verdicts
      let nextRefused = 0
      let nextAccepted = 0
      for (let i = 0; i < batch.items.length; i++) {
        const item = batch.items[i]
        if (item === undefined) continue
        const refusal = refused[nextRefused]
        if (refusal?.index === i) {
          nextRefused++
          const verdict = refusal.verdict
          this.#options.tally?.('failure' in verdict ? undefined : verdict.event, 'failure' in verdict ? undefined : verdict.reason)
          item.reject(errorOf(verdict, item.topic))
          continue
        }
        const event = accepted[nextAccepted++]
        if (event === undefined) {
          item.reject(new Error(`validation worker: no verdict for item ${i} of batch ${batch.seq}`))
          continue
        }
        this.#options.tally?.(event, undefined)
        item.target.describe(event)
        item.resolve()
      }
    }
  }

  #checkInline (batch: Batch): Verdicts {
    const refused: Refusal[] = []
    const accepted: EventSummary[] = []
    batch.items.forEach((item, index) => {
      try {
        accepted.push(this.#options.inline(item.rule, item.topic, item.payload))
      } catch (err: unknown) {
        refused.push({ index, verdict: verdictOf(err) })
      }
    })
    return { refused, accepted }
  }
}

function spawn (url: URL, setup: WorkerSetup): Worker {
  if (!url.pathname.endsWith('.ts')) return new Worker(url, { workerData: setup })
  // TypeScript sources, run through tsx: Node 20 does not pass ESM loader hooks on to
  // workers, so the worker registers tsx itself before it loads its entry
  const bootstrap = `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(url.href)}) })`
  return new Worker(bootstrap, { eval: true, workerData: setup })
}

/** Resolves on the worker's `ready`; rejects if it fails or exits first. */
async function ready (worker: Worker): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const onMessage = (message: unknown): void => {
      if (!isWorkerMessage(message) || message.type !== 'ready') return
      done()
      resolve()
    }
    const onError = (err: Error): void => { done(); reject(err) }
    const onExit = (code: number): void => { done(); reject(new Error(`validation worker exited with code ${code} before it was ready`)) }
    const done = (): void => {
      worker.off('message', onMessage)
      worker.off('error', onError)
      worker.off('exit', onExit)
    }
    worker.on('message', onMessage)
    worker.on('error', onError)
    worker.on('exit', onExit)
  })
}
