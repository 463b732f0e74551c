import type { AedesOptions, Client, PublishPacket } from 'aedes'
import { BrokerError, DeliveryFailedError, DuplicateEventError, EventRejectedError, LimitExceededError, PublishNotAuthorizedError, ReservedTopicError, UnavailableError, toBrokerError, type Disposition } from '../errors.js'
import type { Logger } from '../logger.js'
import type { LogSampler } from '../log-sampler.js'
import type { CoreMetrics } from '../metrics.js'
import type { AuthorizePublishHandler, DeadLetterHandler, DecidedHandler, Origin, PublishVerdict } from '../context.js'
import type { Connections } from '../transport/connections.js'
import { settleChain, tellEach } from './chain.js'
import { Attempt } from './publish-attempt.js'
import { DISCARD_PREFIX, DLQ_PREFIX, isReserved } from '../reserved-topics.js'

type AedesAuthorizePublish = NonNullable<AedesOptions['authorizePublish']>

/** Topic prefixes a diverted publish is moved under. Nobody may publish there; `$DISCARD/` nobody may read. */
export const DIVERT_PREFIX: Readonly<Record<Exclude<Disposition, 'reject'>, string>> = {
  'dead-letter': DLQ_PREFIX,
  discard: DISCARD_PREFIX
}

export interface PublishGateDeps {
  readonly chain: readonly AuthorizePublishHandler[]
  /** Told every verdict (audit); a throw is reported, never fatal. */
  readonly decided: readonly DecidedHandler[]
  readonly reportError: (err: unknown, context: Readonly<Record<string, unknown>>) => void
  /** Builds the dead-letter record of a refused publish; read at call time (the plugin registers it after start). */
  readonly deadLetter: () => DeadLetterHandler | undefined
  /** Publishes the record of a refusal that disconnects (the refused packet itself goes nowhere). */
  readonly publishRecord: (topic: string, record: Buffer) => void
  readonly connections: Connections
  readonly metrics: CoreMetrics
  readonly log: Logger
  /** `limits.maxTopicBytes`: a longer topic is refused, the client disconnected. */
  readonly maxTopicBytes: number
  /** `limits.maxTopicLevels`: a deeper topic is refused, the client disconnected. */
  readonly maxTopicLevels: number
  /** Whether publishes can be stored and routed now (false while Redis is unreachable). */
  readonly available: () => boolean
  /** Resolves true once they can again, false after `timeoutMs`. */
  readonly whenAvailable: (timeoutMs: number) => Promise<boolean>
  /** `redis.outageHoldMs`: how long a client's publish waits for `available` before the client is disconnected. */
  readonly holdMs: number
  /** Samples the warn lines a client can trigger (`limits.clientLogIntervalMs`), shared with the other hooks. */
  readonly sampler: LogSampler
}

/** Who a broker-side publish is made for. */
export interface CheckOptions {
  readonly origin: Origin
  readonly clientId?: string | null
  /** Dead-letter id when this publish replays a dead letter. */
  readonly replayOf?: string
}

/** The publish gate: the aedes hook for client publishes and `check` for broker-side ones (HTTP, replay, `broker.publish`). */
export interface PublishGate {
  readonly hook: AedesAuthorizePublish
  /**
   * Run the chain on `packet`. Resolves `undefined` when accepted, or the refusal:
   * then `packet` has been diverted (`dead-letter`, `discard`) or goes nowhere (`reject`).
   */
  readonly check: (packet: PublishPacket, options: CheckOptions) => Promise<BrokerError | undefined>
  /**
   * Dead-letter what was refused before the chain could run (an HTTP body that is
   * not even JSON): the record is kept and published on `$DLQ/<topic>`.
   */
  readonly keep: (packet: PublishPacket, error: BrokerError, options: CheckOptions) => void
  /**
   * Count and announce a publish refused for its size before its payload was read
   * (the transport guard, the HTTP body limit): nothing to keep, but it is audited.
   */
  readonly tooLarge: (topic: string, payloadBytes: number, limit: number, options: CheckOptions & { readonly qos?: 0 | 1 | 2 }) => void
}

/**
 * Fold the authorizePublish chain into aedes' single slot. Publishes to `$`
 * topics are refused outright (aedes only guards `$SYS/`). A handler's error
 * decides by its `disposition`: `reject` disconnects the publisher (MQTT 3.1.1
 * has no negative PUBACK); `dead-letter` and `discard` rewrite the topic so that
 * no subscriber of the original topic sees it, and the publisher is acked.
 * Whatever the disposition, an error whose `deadLetter` is true is handed to the
 * dead-letter handler first, and its record goes out on `$DLQ/<topic>`.
 */
export function createPublishGate (deps: PublishGateDeps): PublishGate {
  const { chain, connections, metrics, log } = deps

  function decide (packet: PublishPacket, attempt: Attempt, done: (err: BrokerError | undefined) => void): void {
    const topic = packet.topic
    const tooLong = topicOverLimit(topic)
    if (tooLong !== undefined) {
      logSampled(attempt, { topicStart: topic.slice(0, 64), code: tooLong.code, detail: tooLong.message }, 'publish refused: over a limit, client disconnected')
      done(tooLong)
      return
    }
    // aedes guards `$SYS/` only; every `$` topic is the broker's: acked, delivered to no one, told
    if (isReserved(topic)) {
      refuse(packet, attempt, new ReservedTopicError(topic), done)
      return
    }
    if (chain.length === 0) {
      done(undefined)
      return
    }
    settleChain(chain, attempt, function allowed () {
      if (attempt.event !== undefined) metrics.event('accepted')
      announce(attempt, undefined)
      done(undefined)
    }, function refused (raw: unknown) {
      refuse(packet, attempt, toBrokerError(raw), done)
    })
  }

  /** Count, keep or tell, log, divert and announce a refused publish, by its error's disposition. */
  function refuse (packet: PublishPacket, attempt: Attempt, err: BrokerError, done: (err: BrokerError | undefined) => void): void {
    const topic = packet.topic
    count(err)
    // kept as a dead letter, or only told to the publisher (not_authorized, duplicate): the handler builds the record either way
    const record = err.toldToPublisher ? deps.deadLetter()?.(attempt, err, err.deadLetter) : undefined
    logRefusal(attempt, err, err.disposition === 'reject' ? 'publish refused' : 'publish diverted')
    if (err.disposition === 'reject') {
      if (record !== undefined && err.deadLetter) deps.publishRecord(DIVERT_PREFIX['dead-letter'] + topic, record)
    } else {
      // the only place that rewrites a packet's topic: subscribers of the original topic never see it
      packet.topic = DIVERT_PREFIX[err.disposition] + topic
      packet.retain = false
      if (record !== undefined && err.disposition === 'dead-letter' && err.deadLetter) packet.payload = record
    }
    announce(attempt, err)
    done(err)
  }

  /**
   * A line a client can trigger: at most one per client per `limits.clientLogIntervalMs`
   * and level, saying how many were suppressed since the last; never a stack (an expected
   * refusal is not a bug). Each level has its own slot, so a publisher's routine retries
   * (info) never hide its refusals (warn).
   */
  function logSampled (attempt: Attempt, fields: Readonly<Record<string, unknown>>, msg: string, level: 'warn' | 'info' = 'warn'): void {
    const who = attempt.clientId === null ? `origin ${attempt.origin}` : `client ${attempt.clientId}`
    const suppressed = deps.sampler.take(level === 'warn' ? who : `${level} ${who}`)
    if (suppressed === undefined) return
    attempt.log[level](suppressed === 0 ? fields : { ...fields, suppressed }, msg)
  }

  /**
   * One warn line per refusal (sampled per client), with the reason, the event id and the
   * extension values that tie a business flow together (correlationid, causationid,
   * traceparent), so one flow can be followed across services; the payload only at debug.
   */
  function logRefusal (attempt: Attempt, err: BrokerError, msg: string): void {
    if (err instanceof DuplicateEventError) {
      // a publisher retrying is routine, not a warning; MQTT publishers are told on $rejections
      logSampled(attempt, { reason: err.reason, eventId: err.event.id, source: err.event.source, topic: attempt.topic, origin: attempt.origin }, 'duplicate event dropped', 'info')
      return
    }
    if (err instanceof DeliveryFailedError) {
      // the broker's own delivery, not a client's doing: never sampled
      attempt.log.warn({ reason: err.reason, subscription: err.subscription, eventId: err.eventId, attempts: err.attempts, lastStatus: err.lastStatus, detail: err.message }, 'webhook delivery failed for good: dead-lettered')
      return
    }
    if (!(err instanceof EventRejectedError)) {
      const reason = err instanceof PublishNotAuthorizedError || err instanceof ReservedTopicError ? err.reason : undefined
      logSampled(attempt, { code: err.code, ...(reason === undefined ? {} : { reason }), topic: attempt.topic, detail: err.message }, msg)
      return
    }
    const { event } = err
    logSampled(attempt, {
      reason: err.reason,
      eventId: event.id,
      type: event.type,
      correlationid: event.correlationid,
      causationid: event.causationid,
      traceparent: event.traceparent,
      errors: err.problems,
      origin: attempt.origin
    }, msg)
    attempt.log.debug({ reason: err.reason, eventId: event.id, payload: attempt.payload.toString('utf8') }, 'refused payload')
  }

  /**
   * Whether `topic` is long enough to be over a limit: a UTF-8 character is at most 3
   * bytes per UTF-16 unit, and n levels take n − 1 characters. Most topics are short
   * enough to skip the counting.
   */
  function mayBeOverLimit (topic: string): boolean {
    return topic.length * 3 > deps.maxTopicBytes || topic.length >= deps.maxTopicLevels
  }

  /** The refusal of a topic over `maxTopicBytes` or `maxTopicLevels`, counted; `undefined` for one within them. */
  function topicOverLimit (topic: string): LimitExceededError | undefined {
    if (!mayBeOverLimit(topic)) return undefined
    const bytes = Buffer.byteLength(topic)
    if (bytes > deps.maxTopicBytes) {
      metrics.limitHit('topic_bytes')
      return new LimitExceededError('topic_bytes', `a topic of ${bytes} bytes is over limits.maxTopicBytes (${deps.maxTopicBytes})`)
    }
    const levels = topic.split('/').length
    if (levels > deps.maxTopicLevels) {
      metrics.limitHit('topic_levels')
      return new LimitExceededError('topic_levels', `a topic of ${levels} levels is over limits.maxTopicLevels (${deps.maxTopicLevels})`)
    }
    return undefined
  }

  function count (err: BrokerError): void {
    if (err instanceof EventRejectedError || err instanceof PublishNotAuthorizedError || err instanceof ReservedTopicError) metrics.event('rejected', err.reason)
    else if (err instanceof DuplicateEventError) metrics.event('duplicate')
  }

  function announce (attempt: Attempt, verdict: PublishVerdict): void {
    tellEach(deps.decided, [attempt, verdict], (err, handler) => { deps.reportError(err, { hook: 'decided', handler, topic: attempt.topic }) })
  }

  function hook (client: Client | null, packet: PublishPacket, callback: (err?: Error | null) => void): void {
    // wills come through here too, as plain { topic, payload } objects without `cmd`
    const meta = client === null ? undefined : connections.metaOf(client)
    const origin: Origin = client === null ? 'internal' : meta?.transport ?? 'tcp'
    if (packet.cmd === 'publish') metrics.publishReceived(origin)
    if (!deps.available()) {
      hold(client, packet, origin, meta, callback)
      return
    }
    admit(client, packet, origin, meta, callback)
  }

  /**
   * While Redis is unreachable a publish waits here, not acked (aedes writes PUBACK and
   * PUBREC only after this hook), and the client's further packets wait behind it. Past
   * `holdMs` the client is disconnected: it keeps its QoS 1/2 messages and sends them
   * again once it reconnects; a QoS 0 message is lost.
   */
  function hold (client: Client | null, packet: PublishPacket, origin: Origin, meta: ReturnType<Connections['metaOf']>, callback: (err?: Error | null) => void): void {
    deps.whenAvailable(deps.holdMs).then(function availableAgain (ok) {
      if (ok) {
        admit(client, packet, origin, meta, callback)
        return
      }
      // one of many during an outage, which is itself logged once
      log.debug({ clientId: client?.id, topic: packet.topic, qos: packet.qos, holdMs: deps.holdMs }, 'publish not acked: redis still unreachable, client disconnected')
      callback(new UnavailableError(`redis has been unreachable for redis.outageHoldMs (${deps.holdMs} ms); the publish was not acked`))
    }, callback)
  }

  function admit (client: Client | null, packet: PublishPacket, origin: Origin, meta: ReturnType<Connections['metaOf']>, callback: (err?: Error | null) => void): void {
    if (chain.length === 0 && !isReserved(packet.topic) && !mayBeOverLimit(packet.topic)) {
      // nothing to ask: skip building the attempt (the benchmark's no-plugin path)
      callback(null)
      return
    }
    const attempt = new Attempt(packet.topic, payloadOf(packet), packet.qos, packet.retain, client?.id ?? null, meta?.identity, origin, log, undefined)
    decide(packet, attempt, function decided (err) {
      callback(err !== undefined && err.disposition === 'reject' ? err : null)
    })
  }

  async function check (packet: PublishPacket, options: CheckOptions): Promise<BrokerError | undefined> {
    metrics.publishReceived(options.origin)
    // an HTTP sender is told at once (503, Retry-After) rather than held
    if (!deps.available()) return new UnavailableError('redis is unreachable: the event was not accepted; send it again later')
    const attempt = new Attempt(packet.topic, payloadOf(packet), packet.qos, packet.retain, options.clientId ?? null, undefined, options.origin, log, options.replayOf)
    return await new Promise((resolve) => { decide(packet, attempt, resolve) })
  }

  function keep (packet: PublishPacket, error: BrokerError, options: CheckOptions): void {
    count(error)
    const attempt = new Attempt(packet.topic, payloadOf(packet), packet.qos, packet.retain, options.clientId ?? null, undefined, options.origin, log, options.replayOf)
    logRefusal(attempt, error, 'publish refused')
    const record = deps.deadLetter()?.(attempt, error, true)
    if (record !== undefined) deps.publishRecord(DIVERT_PREFIX['dead-letter'] + packet.topic, record)
    announce(attempt, error)
  }

  function tooLarge (topic: string, payloadBytes: number, limit: number, options: CheckOptions & { readonly qos?: 0 | 1 | 2 }): void {
    const err = new EventRejectedError('payload_too_large', topic, [{ path: '', message: `payload of ${payloadBytes} bytes is over the limit of ${limit}` }], 'disconnect')
    count(err)
    announce(new Attempt(topic, EMPTY, options.qos ?? 0, false, options.clientId ?? null, undefined, options.origin, log, undefined), err)
  }

  return { hook, check, keep, tooLarge }
}

const EMPTY = Buffer.alloc(0)

function payloadOf (packet: PublishPacket): Buffer {
  return typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload
}
