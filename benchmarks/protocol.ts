/**
 * Messages exchanged over the IPC channels between `run.js` and its children
 * (`server.js`, `loadgen.js`, `receiver.js`). Children are forked from compiled
 * JavaScript, so every message arrives as `unknown` and is narrowed by the guards below.
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

/**
 * ce-broker's webhook counters so far, read from its metrics registry (what `/metrics`
 * serves): `ce_broker_webhook_deliveries_total` by outcome, summed over subscriptions,
 * and `ce_broker_webhook_queue_depth`.
 */
export interface WebhookCounters {
  /** Deliveries the endpoint acknowledged (2xx). */
  readonly delivered: number
  /** Deliveries that failed for good (attempts ran out, or a final 4xx): dead-lettered as `delivery_failed`. */
  readonly failed: number
  /** Deliveries refused because the queue held `webhooks.maxQueued`: dead-lettered as `queue_full`. */
  readonly queueFull: number
  /** Deliveries queued or waiting for a retry right now. */
  readonly queueDepth: number
}

/**
 * What the server process's schema registrations (`schema-registrations.ts`) got so far:
 * a scenario with `registrations`, on its registering side only.
 */
export interface RegistrationCounters {
  /** Registrations sent (POST `/api/schemas/<type>/versions`). */
  readonly sent: number
  /** Of those, answered at all (any status), so far. */
  readonly answered: number
  /** Of those, answered 201: a new version, compiled and in force. */
  readonly created: number
  /** Of those, answered otherwise, by status (`200`, `409`, ...), or `error` when no answer came (network error, timeout). */
  readonly otherwise: Readonly<Record<string, number>>
  /** The first answer other than 201: status and the start of its body, or the error. */
  readonly firstProblem?: string
  /** Ticks skipped because the registration before was still unanswered (never two at once). */
  readonly skipped: number
  /** Time from sending a registration to having read its answer, summed over the `answered` ones, and the longest, in ms. */
  readonly totalMs: number
  readonly maxMs: number
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
  /** ce-broker only (raw Aedes has no webhooks). */
  readonly webhooks?: WebhookCounters
  /** Only a server that registers schema versions while loaded. */
  readonly registrations?: RegistrationCounters
}

/** Loadgen → parent: the measuring window opens or closes (lets the parent sample the server and receiver). */
export interface WindowMessage {
  readonly type: 'window'
  readonly phase: 'start' | 'end'
  /**
   * The loadgen's wall clock at that moment (`performance.timeOrigin + performance.now()`),
   * in ms: the receiver picks the events sent in the window by their send stamp.
   */
  readonly atMs: number
}

/** Latency percentiles of the events sent inside the window (send stamp to arrival), in ms; all 0 when `count` is 0. */
export interface LatencySummary {
  /** Events sent in the window that arrived; the percentiles are over these. */
  readonly count: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly maxMs: number
}

/**
 * Windowed load only (`fanin-qos1-windowed`): how full its two bounds were. Means are
 * over samples taken every 10 ms in the window; all counts are PUBLISH packets.
 */
export interface WindowedFigures {
  /** Messages the subscriber received per second in the first and in the second half of the window: about equal in a steady state. */
  readonly firstHalfPerSec: number
  readonly secondHalfPerSec: number
  /** Written without their PUBACK yet, summed over publishers; the bound is publishers × `window`. */
  readonly meanUnacked: number
  /** Written and not yet received by the subscriber; the bound is `maxUnreceived`. */
  readonly meanUnreceived: number
  /** Written and not yet received, at the window's start and end: equal in a steady state. */
  readonly unreceivedAtStart: number
  readonly unreceivedAtEnd: number
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
  /** Paced loads only: publish → MQTT subscriber latency of the events sent in the window. */
  readonly latency?: LatencySummary
  /** Windowed loads only: how full the PUBACK window and the end-to-end bound were. */
  readonly windowed?: WindowedFigures
}

/** Loadgen → parent: the figures, sent once, just before it exits. */
export interface ResultMessage {
  readonly type: 'result'
  readonly result: LoadResult
}

/** Path of the receiver's webhook endpoint: `http://127.0.0.1:<port>/webhook`. */
export const RECEIVER_PATH = '/webhook'

/** Parent → receiver: report your counters now. */
export interface ReceiverStatsRequest {
  readonly type: 'stats'
  readonly id: number
}

/** Receiver → parent: answer to a `ReceiverStatsRequest` with the same `id`. */
export interface ReceiverStatsMessage {
  readonly type: 'stats'
  readonly id: number
  /** Webhook requests received so far. */
  readonly requests: number
  /** Of those, requests without a `webhook-signature` header (every one should be signed). */
  readonly unsigned: number
  /** Of those, requests carrying a send stamp (`ce-sentat`), i.e. latency samples. */
  readonly stamped: number
  /** User + system CPU time the receiver process has used so far, in µs. */
  readonly cpuMicros: number
  /** The receiver's `performance.now()`, in ms: rates and CPU are divided by the receiver's own wall time. */
  readonly nowMs: number
}

/** Parent → receiver: latency of the stamped requests whose send stamp is in [`fromMs`, `toMs`) (wall clock, ms). */
export interface LatencyRequest {
  readonly type: 'latency'
  readonly id: number
  readonly fromMs: number
  readonly toMs: number
}

/** Receiver → parent: answer to a `LatencyRequest` with the same `id`. */
export interface LatencyMessage {
  readonly type: 'latency'
  readonly id: number
  readonly summary: LatencySummary
}

/** Anything a server child sends. */
export type ServerMessage = ReadyMessage | StatsMessage
/** Anything a loadgen child sends. */
export type LoadgenMessage = WindowMessage | ResultMessage
/** Anything a receiver child sends. */
export type ReceiverMessage = ReadyMessage | ReceiverStatsMessage | LatencyMessage
/** Anything the parent sends a receiver child. */
export type ReceiverRequest = ReceiverStatsRequest | LatencyRequest

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

function isWebhookCounters (value: unknown): value is WebhookCounters {
  return isRecord(value) && isNumber(value.delivered) && isNumber(value.failed) && isNumber(value.queueFull) && isNumber(value.queueDepth)
}

function isRegistrationCounters (value: unknown): value is RegistrationCounters {
  return isRecord(value) && isNumber(value.sent) && isNumber(value.answered) && isNumber(value.created) && isNumber(value.skipped) && isNumber(value.totalMs) && isNumber(value.maxMs) &&
    isRecord(value.otherwise) && Object.values(value.otherwise).every(isNumber) && (value.firstProblem === undefined || typeof value.firstProblem === 'string')
}

function isWindowedFigures (value: unknown): value is WindowedFigures {
  return isRecord(value) && isNumber(value.firstHalfPerSec) && isNumber(value.secondHalfPerSec) && isNumber(value.meanUnacked) && isNumber(value.meanUnreceived) && isNumber(value.unreceivedAtStart) && isNumber(value.unreceivedAtEnd)
}

function isLatencySummary (value: unknown): value is LatencySummary {
  return isRecord(value) && isNumber(value.count) && isNumber(value.p50Ms) && isNumber(value.p99Ms) && isNumber(value.maxMs)
}

/** Narrow a message a server child sent. */
export function isServerMessage (value: unknown): value is ServerMessage {
  if (!isRecord(value)) return false
  if (value.type === 'ready') return isNumber(value.port)
  return value.type === 'stats' && isNumber(value.id) && isNumber(value.cpuMicros) && isNumber(value.nowMs) && isNumber(value.rssBytes) &&
    (value.webhooks === undefined || isWebhookCounters(value.webhooks)) && (value.registrations === undefined || isRegistrationCounters(value.registrations))
}

/** Narrow a message the parent sent to a server child. */
export function isStatsRequest (value: unknown): value is StatsRequest {
  return isRecord(value) && value.type === 'stats' && isNumber(value.id)
}

/** Narrow a message a loadgen child sent. */
export function isLoadgenMessage (value: unknown): value is LoadgenMessage {
  if (!isRecord(value)) return false
  if (value.type === 'window') return (value.phase === 'start' || value.phase === 'end') && isNumber(value.atMs)
  if (value.type !== 'result' || !isRecord(value.result)) return false
  const r = value.result
  return isNumber(r.msgsPerSec) && isNumber(r.offeredPerSec) && isNumber(r.bytesPerSec) && isNumber(r.windowMs) &&
    isNumber(r.cpuShare) && isNumber(r.eventLoopUtilization) && isNumber(r.backlogMessages) && isNumber(r.drainMs) && isNumber(r.undelivered) &&
    (r.latency === undefined || isLatencySummary(r.latency)) && (r.windowed === undefined || isWindowedFigures(r.windowed))
}

/** Narrow a message a receiver child sent. */
export function isReceiverMessage (value: unknown): value is ReceiverMessage {
  if (!isRecord(value)) return false
  if (value.type === 'ready') return isNumber(value.port)
  if (value.type === 'latency') return isNumber(value.id) && isLatencySummary(value.summary)
  return value.type === 'stats' && isNumber(value.id) && isNumber(value.requests) && isNumber(value.unsigned) && isNumber(value.stamped) &&
    isNumber(value.cpuMicros) && isNumber(value.nowMs)
}

/** Narrow a message the parent sent to a receiver child. */
export function isReceiverRequest (value: unknown): value is ReceiverRequest {
  if (!isRecord(value) || !isNumber(value.id)) return false
  if (value.type === 'stats') return true
  return value.type === 'latency' && isNumber(value.fromMs) && isNumber(value.toMs)
}
