import { EventRejectedError, type EventProblem, type EventSummary, type RejectReason } from '../../src/core/index.js'
import type { RegistryChange, RegistrySnapshot } from './registry.js'
import type { ValidationRule } from './config.js'

/** What a validation worker is started with (`workerData`). */
export interface WorkerSetup {
  readonly rules: readonly ValidationRule[]
  readonly registry: RegistrySnapshot
}

/**
 * Main thread → worker, besides batches: a registry change, applied before the batches
 * posted after it (a worker takes its messages in order), so every event is checked
 * against the registry as it was when its batch left, whole.
 */
export interface ChangeMessage {
  readonly kind: 'change'
  readonly change: RegistryChange
}

export function isChangeMessage (message: unknown): message is ChangeMessage {
  return typeof message === 'object' && message !== null && Reflect.get(message, 'kind') === 'change'
}

/**
 * Publishes to check, main thread → worker: `count` items back to back in the first
 * `used` bytes of `bytes`, each laid out as written by `writeItem`. `bytes` is
 * shared memory: posting it neither copies nor detaches it (a transferred
 * ArrayBuffer cost 50 µs a message here, a shared one 2 µs), and the main thread
 * reuses it once the verdicts are in.
 */
export interface CheckBatch {
  readonly seq: number
  readonly count: number
  readonly used: number
  readonly bytes: SharedArrayBuffer
}

/** One refused item of a batch, by its position. Accepted items are not listed. */
export interface Refusal {
  readonly index: number
  readonly verdict: RejectedVerdict | FailedVerdict
}

/**
 * Worker → main thread: `ready` once compiled, then one `verdicts` per batch, in
 * order: the refused items by index, and the accepted items' event summaries in
 * item order (one per item not refused).
 */
export type WorkerMessage =
  | { readonly type: 'ready' }
  | { readonly type: 'verdicts', readonly seq: number, readonly refused: readonly Refusal[], readonly accepted: readonly EventSummary[] }

/** Bytes `writeItem` may need for an item, at most (UTF-8 takes up to 3 bytes per UTF-16 unit). */
export function itemSize (topic: string, payload: Buffer): number {
  return 12 + topic.length * 3 + payload.length
}

/**
 * Write one item at `offset` of `into`, which has `itemSize()` bytes free there:
 * u32 rule index, u32 topic length, topic (UTF-8), u32 payload length, payload.
 * Returns the offset after it. One small binary record instead of structured-clone
 * arrays: cloning them cost more than the copy.
 */
export function writeItem (into: Buffer, offset: number, rule: number, topic: string, payload: Buffer): number {
  into.writeUInt32LE(rule, offset)
  const topicLength = into.write(topic, offset + 8, 'utf8')
  into.writeUInt32LE(topicLength, offset + 4)
  let at = offset + 8 + topicLength
  into.writeUInt32LE(payload.length, at)
  at += 4
  return at + payload.copy(into, at)
}

/** Visit the items of a batch in order; `payload` is a view into `bytes`. */
export function readItems (bytes: Buffer, count: number, visit: (index: number, rule: number, topic: string, payload: Buffer) => void): void {
  let at = 0
  for (let index = 0; index < count; index++) {
    const rule = bytes.readUInt32LE(at)
    const topicLength = bytes.readUInt32LE(at + 4)
    const topic = bytes.toString('utf8', at + 8, at + 8 + topicLength)
    at += 8 + topicLength
    const payloadLength = bytes.readUInt32LE(at)
    at += 4
    visit(index, rule, topic, bytes.subarray(at, at + payloadLength))
    at += payloadLength
  }
}

/** An `EventRejectedError` as plain data. */
export interface RejectedVerdict {
  readonly reason: RejectReason
  readonly problems: readonly EventProblem[]
  readonly onInvalid: 'dlq' | 'disconnect'
  readonly event: EventSummary
}

/** The check itself threw something else (a bug): its message. */
export interface FailedVerdict {
  readonly failure: string
}

/** What a check threw, as a verdict. */
export function verdictOf (err: unknown): RejectedVerdict | FailedVerdict {
  if (err instanceof EventRejectedError) {
    return { reason: err.reason, problems: err.problems, onInvalid: err.disposition === 'reject' ? 'disconnect' : 'dlq', event: err.event }
  }
  return { failure: err instanceof Error ? err.message : String(err) }
}

/** The error a refusal stands for. */
export function errorOf (verdict: RejectedVerdict | FailedVerdict, topic: string): Error {
  if ('failure' in verdict) return new Error(`validation worker: ${verdict.failure}`)
  return new EventRejectedError(verdict.reason, topic, verdict.problems, verdict.onInvalid, verdict.event)
}

export function isWorkerMessage (message: unknown): message is WorkerMessage {
  if (typeof message !== 'object' || message === null || !('type' in message)) return false
  return message.type === 'ready' || (message.type === 'verdicts' && 'seq' in message && 'refused' in message && Array.isArray(message.refused) &&
    'accepted' in message && Array.isArray(message.accepted))
}
