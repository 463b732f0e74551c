/**
 * Messages exchanged over the IPC channels between `run.js` and its children
 * (`server.js`, `loadgen.js`). Children are forked from compiled JavaScript, so
 * every message arrives as `unknown` and is narrowed by the guards below.
 */

/** Which broker a server process runs. */
export type BrokerKind = 'aedes' | 'ce-broker'

/** The broker kinds, in the order round 1 runs them. */
export const BROKER_KINDS: readonly BrokerKind[] = ['aedes', 'ce-broker']

/** Server → parent: listening on 127.0.0.1:`port`. */
export interface ReadyMessage {
  readonly type: 'ready'
  readonly port: number
}

/** Parent → server: report your resource usage now. */
export interface StatsRequest {
  readonly type: 'stats'
  readonly id: number
}

/** Server → parent: answer to a `StatsRequest` with the same `id`. */
export interface StatsMessage {
  readonly type: 'stats'
  readonly id: number
  /** User + system CPU time the server process has used so far, in µs. */
  readonly cpuMicros: number
  /** The server's `performance.now()`, in ms, so CPU can be divided by the server's own wall time. */
  readonly nowMs: number
  /** Resident set size, in bytes. */
  readonly rssBytes: number
}

/** Loadgen → parent: the measuring window opens or closes (lets the parent sample the server). */
export interface WindowMessage {
  readonly type: 'window'
  readonly phase: 'start' | 'end'
}

/** What one load generator run measured over its window. */
export interface LoadResult {
  /** PUBLISH packets the subscriber received per second. The figure the benchmark compares. */
  readonly msgsPerSec: number
  /** PUBLISH packets the publishers handed to their sockets per second. */
  readonly offeredPerSec: number
  /** Bytes the subscriber received per second. */
  readonly bytesPerSec: number
  /** Length of the window, in ms. */
  readonly windowMs: number
  /** Loadgen CPU time (user + system) over the window divided by its wall time; 1 = one full core. */
  readonly cpuShare: number
  /** Loadgen event-loop utilization over the window, 0..1. */
  readonly eventLoopUtilization: number
  /** PUBLISH packets the subscriber still received after the publishers stopped (socket and broker buffers). */
  readonly backlogMessages: number
  /** How long receiving that backlog took, in ms. */
  readonly drainMs: number
  /** PUBLISH packets written but never received once the backlog drained; 0 unless the broker dropped some. */
  readonly undelivered: number
}

/** Loadgen → parent: the figures, sent once, just before it exits. */
export interface ResultMessage {
  readonly type: 'result'
  readonly result: LoadResult
}

/** Anything a server child sends. */
export type ServerMessage = ReadyMessage | StatsMessage
/** Anything a loadgen child sends. */
export type LoadgenMessage = WindowMessage | ResultMessage

function isRecord (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null
}

function isNumber (value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value)
}

/** True for a `BrokerKind` name given on a command line. */
export function isBrokerKind (value: unknown): value is BrokerKind {
  return value === 'aedes' || value === 'ce-broker'
}

/** Narrow a message a server child sent. */
export function isServerMessage (value: unknown): value is ServerMessage {
  if (!isRecord(value)) return false
  if (value.type === 'ready') return isNumber(value.port)
  return value.type === 'stats' && isNumber(value.id) && isNumber(value.cpuMicros) && isNumber(value.nowMs) && isNumber(value.rssBytes)
}

/** Narrow a message the parent sent to a server child. */
export function isStatsRequest (value: unknown): value is StatsRequest {
  return isRecord(value) && value.type === 'stats' && isNumber(value.id)
}

/** Narrow a message a loadgen child sent. */
export function isLoadgenMessage (value: unknown): value is LoadgenMessage {
  if (!isRecord(value)) return false
  if (value.type === 'window') return value.phase === 'start' || value.phase === 'end'
  if (value.type !== 'result' || !isRecord(value.result)) return false
  const r = value.result
  return isNumber(r.msgsPerSec) && isNumber(r.offeredPerSec) && isNumber(r.bytesPerSec) && isNumber(r.windowMs) &&
    isNumber(r.cpuShare) && isNumber(r.eventLoopUtilization) && isNumber(r.backlogMessages) && isNumber(r.drainMs) && isNumber(r.undelivered)
}
