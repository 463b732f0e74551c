import type { PublishPacket } from 'aedes'
import { REJECT_REASONS, type BrokerError, type Disposition } from '../errors.js'
import type { DeadLetterHandler, DecidedHandler, PublishVerdict } from '../context.js'
import type { LogSampler } from '../log-sampler.js'
import type { CoreMetrics } from '../metrics.js'
import type { Tracing } from '../tracing/index.js'
import { DISCARD_PREFIX, DLQ_PREFIX } from '../reserved-topics.js'
import { TRANSPORTS } from '../transport/connections.js'
import type { Logger } from '../logger.js'
import type { Attempt } from './attempt.js'
import { tellEach } from './chain.js'

/** Topic prefixes a diverted publish is moved under. Nobody may publish there; `$DISCARD/` nobody may read. */
const DIVERT_PREFIX: Readonly<Record<Exclude<Disposition, 'reject'>, string>> = {
  'dead-letter': DLQ_PREFIX,
  discard: DISCARD_PREFIX
}

/** Who is told on `$rejections/<clientId>`: MQTT publishers (HTTP ones get the record in the answer). */
const MQTT_ORIGINS: ReadonlySet<string> = new Set(TRANSPORTS)

/**
 * What a refusal adds to `ce_broker_events_total`, by reason: the event or its
 * publisher refused, or a duplicate. Any other reason is no verdict on an event (a
 * webhook's failed delivery was of an accepted one; a plugin's fault is its own).
 */
const EVENT_OUTCOMES: ReadonlyMap<string, 'rejected' | 'duplicate'> = new Map([
  ...REJECT_REASONS.map((reason) => [reason, 'rejected'] as const),
  ['not_authorized', 'rejected'],
  ['duplicate', 'duplicate']
])

export interface RefusalDeps {
  /** Told every verdict (audit); a throw is reported, never fatal. */
  readonly decided: readonly DecidedHandler[]
  readonly reportError: (err: unknown, context: Readonly<Record<string, unknown>>) => void
  /** Builds the dead-letter record of a refused publish; read at call time (the plugin registers it after start). */
  readonly deadLetter: () => DeadLetterHandler | undefined
  /** Publishes the record of a refusal that disconnects (the refused packet itself goes nowhere). */
  readonly publishRecord: (topic: string, record: Buffer) => void
  /** Publishes a refusal's record on `$rejections/<clientId>`; resolves once routed (written to the client's connection when it is subscribed). */
  readonly tell: (clientId: string, record: Buffer) => Promise<void>
  /** `limits.rejectionWaitMs`: how long the publisher's answer waits for `tell`; 0, not at all. */
  readonly rejectionWaitMs: number
  readonly metrics: CoreMetrics
  /** Samples the warn lines a client can trigger (`limits.clientLogIntervalMs`), shared with the other hooks. */
  readonly sampler: LogSampler
  readonly log: Logger
  /** With `tracing.otlpUrl`: told every verdict, to make the publish's spans. */
  readonly tracing: Tracing | undefined
}

/** What the pipeline does with a refused publish, by its error. */
export interface Refusals {
  /**
   * Count it, have the dead-letter handler keep it or tell its publisher, log it, divert
   * it (or not: `reject`) and announce it; then `done(err)`.
   */
  readonly refuse: (packet: PublishPacket, attempt: Attempt, err: BrokerError, done: (err: BrokerError) => void) => void
  /** Dead-letter a publish refused before the chain could run: the record goes out on `$DLQ/<topic>`. */
  readonly keep: (attempt: Attempt, err: BrokerError) => void
  /** Count and announce a refusal that keeps nothing: a size refusal, whose payload was never read. */
  readonly note: (attempt: Attempt, err: BrokerError) => void
  /** Write the error's log line for a refusal; `msg` when the error has none of its own. */
  readonly log: (attempt: Attempt, err: BrokerError, msg: string) => void
  /** Tell the `decided` handlers a verdict. */
  readonly announce: (attempt: Attempt, verdict: PublishVerdict) => void
}

export function createRefusals (deps: RefusalDeps): Refusals {
  const { metrics } = deps

  function refuse (packet: PublishPacket, attempt: Attempt, err: BrokerError, done: (err: BrokerError) => void): void {
    const topic = packet.topic
    count(err)
    // kept as a dead letter, or only told to the publisher (not_authorized, duplicate): the handler builds the record either way
    const record = err.toldToPublisher ? deps.deadLetter()?.(attempt, err, err.deadLetter) : undefined
    const told = record !== undefined && attempt.clientId !== null && MQTT_ORIGINS.has(attempt.origin) ? tellFirst(deps, attempt.clientId, record) : undefined
    log(attempt, err, err.disposition === 'reject' ? 'publish refused' : 'publish diverted')
    if (err.disposition === 'reject') {
      if (record !== undefined && err.deadLetter) deps.publishRecord(DIVERT_PREFIX['dead-letter'] + topic, record)
    } else {
      // the only place that rewrites a packet's topic: subscribers of the original topic never see it
      packet.topic = DIVERT_PREFIX[err.disposition] + topic
      packet.retain = false
      if (record !== undefined && err.disposition === 'dead-letter' && err.deadLetter) packet.payload = record
    }
    announce(attempt, err)
    // the record is on the publisher's connection before its PUBACK (or its disconnect): a publisher on MQTT 3.1.1 that
    // subscribes to its `$rejections` knows, when the PUBACK comes, whether its event was accepted (the client library relies on it)
    if (told === undefined) done(err)
    else void told.then(() => { done(err) })
  }

  function keep (attempt: Attempt, err: BrokerError): void {
    count(err)
    log(attempt, err, 'publish refused')
    const record = deps.deadLetter()?.(attempt, err, true)
    if (record !== undefined) deps.publishRecord(DIVERT_PREFIX['dead-letter'] + attempt.topic, record)
    announce(attempt, err)
  }

  function note (attempt: Attempt, err: BrokerError): void {
    count(err)
    announce(attempt, err)
  }

  /**
   * The line the error gives. A line a client can trigger is sampled: at most one per
   * client per `limits.clientLogIntervalMs` and level, saying how many were suppressed
   * since the last; never a stack (an expected refusal is not a bug). Each level has its
   * own slot, so a publisher's routine retries (info) never hide its refusals (warn).
   */
  function log (attempt: Attempt, err: BrokerError, msg: string): void {
    const line = err.refusalLog(attempt)
    const text = line.msg ?? msg
    if (line.sampled) {
      const who = attempt.clientId === null ? `origin ${attempt.origin}` : `client ${attempt.clientId}`
      const suppressed = deps.sampler.take(line.level === 'warn' ? who : `${line.level} ${who}`)
      if (suppressed !== undefined) attempt.log[line.level](suppressed === 0 ? line.fields : { ...line.fields, suppressed }, text)
    } else {
      attempt.log[line.level](line.fields, text)
    }
    if (line.payloadLine !== undefined) attempt.log.debug({ ...line.payloadLine, payload: attempt.payload.toString('utf8') }, 'refused payload')
  }

  function count (err: BrokerError): void {
    const outcome = EVENT_OUTCOMES.get(err.reason)
    if (outcome === 'rejected') metrics.event('rejected', err.reason)
    else if (outcome === 'duplicate') metrics.event('duplicate')
  }

  function announce (attempt: Attempt, verdict: PublishVerdict): void {
    if (deps.tracing !== undefined) deps.tracing.decided(attempt, verdict)
    tellEach(deps.decided, [attempt, verdict], (err, handler) => { deps.reportError(err, { hook: 'decided', handler, topic: attempt.topic }) })
  }

  return { refuse, keep, note, log, announce }
}

/**
 * Tell an MQTT publisher on `$rejections/<clientId>`. Resolves once told, or after
 * `limits.rejectionWaitMs` (counted, logged sampled); `undefined` when that is 0: the
 * record is told all the same, and the answer does not wait for it (nothing to count).
 */
function tellFirst (deps: RefusalDeps, clientId: string, record: Buffer): Promise<void> | undefined {
  const told = deps.tell(clientId, record).catch((err: unknown) => { deps.reportError(err, { op: 'publish rejection', clientId }) })
  if (deps.rejectionWaitMs === 0) return undefined
  let timer: NodeJS.Timeout | undefined
  const waited = new Promise<void>((resolve) => {
    timer = setTimeout(function rejectionWaitOver () {
      deps.metrics.limitHit('rejection_wait')
      const suppressed = deps.sampler.take(`rejection-wait:${clientId}`)
      if (suppressed !== undefined) deps.log.warn({ clientId, waitMs: deps.rejectionWaitMs, suppressed }, 'refusal record not written to its publisher within limits.rejectionWaitMs: answered first')
      resolve()
    }, deps.rejectionWaitMs).unref()
  })
  return Promise.race([told, waited]).then(() => { clearTimeout(timer) })
}
