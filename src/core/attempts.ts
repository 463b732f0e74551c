/**
 * What plugins are handed about one connection, publish, subscription or delivery,
 * and the trace context that travels with a publish.
 */
import type { Context, Tracer } from '@opentelemetry/api'
import type { BrokerError, EventSummary } from './errors.js'
import type { Logger } from './logger.js'

/** How a client reached the broker. `http` and `internal` publishes have no MQTT connection. */
export type Transport = 'tcp' | 'tls' | 'ws' | 'wss'

/** Where a publish came from. */
export type Origin = Transport | 'http' | 'internal'

/** Who a client is, once authenticated: its user name and the roles its ACL rules are found by. */
export interface Identity {
  readonly username: string
  readonly roles: readonly string[]
}

/** A CONNECT as the `preConnect` and `authenticate` chains see it. */
export interface ConnectAttempt {
  /** The client id as sent; may be empty (the broker then assigns one when the session is clean). */
  readonly clientId: string
  readonly clean: boolean
  readonly username: string | undefined
  readonly password: Buffer | undefined
  readonly transport: Transport
  readonly remoteAddress: string | undefined
  /** The topic of the will the CONNECT carries, if any: published for the client when it dies. */
  readonly willTopic: string | undefined
  readonly log: Logger
  /** Say who the client is (an authenticate handler that checked its credentials); its publishes and subscriptions carry it. */
  identify: (identity: Identity) => void
}

/** A PUBLISH on its way in, before anyone sees it. Read-only: hooks refuse by throwing. */
export interface PublishAttempt {
  readonly topic: string
  readonly payload: Buffer
  readonly qos: 0 | 1 | 2
  readonly retain: boolean
  /** `null` for wills published after their client is gone, and for HTTP and broker-side publishes. */
  readonly clientId: string | null
  /** Who the MQTT client authenticated as; `undefined` when anonymous, and for HTTP and broker-side publishes. */
  readonly identity: Identity | undefined
  readonly origin: Origin
  /** Set when this publish replays the dead letter with this id. */
  readonly replayOf: string | undefined
  /** Child logger with `{ clientId, topic }`. */
  readonly log: Logger
  /**
   * The CloudEvent this publish carries, once a check has read it (schema-validation
   * does, on topics whose rule asks for CloudEvents): `id`, `source`, `type`, `time`
   * and the tracing extensions. `undefined` on other topics, and before.
   */
  readonly event: EventSummary | undefined
  /** Say what event the payload holds, for the handlers after this one. Called by the plugin that parsed it. */
  describe: (event: EventSummary) => void
  /**
   * With `--redis`: have the commit take the idempotency claim `key` for `ttlMs`, once
   * every handler has passed the event, in the same atomic step that writes the event
   * to the node's journal; if the key is taken by then, the event is refused with
   * `taken()`. `false` when this node commits nothing (embedded): the handler claims by itself.
   */
  claim: (key: string, ttlMs: number, taken: () => BrokerError) => boolean
  /**
   * Durable work started for this event (its audit entry on the way to Redis). With
   * `--redis`, a QoS 1/2 or HTTP publisher is acknowledged only once `work` has
   * resolved; a rejection withholds the acknowledgement.
   */
  keepUntil: (work: Promise<unknown>) => void
}

/**
 * How the pipeline decided a publish: `undefined` when it was accepted, else the
 * error that refused it (`EventRejectedError`, `DuplicateEventError`, ...).
 */
export type PublishVerdict = BrokerError | undefined

/** A SUBSCRIBE for one filter. */
export interface SubscribeAttempt {
  readonly clientId: string
  /** Who the client authenticated as; `undefined` when anonymous. */
  readonly identity: Identity | undefined
  /** The filter; for a shared subscription `$share/<group>/<filter>`, its `<filter>` (what an ACL judges). */
  readonly topic: string
  readonly qos: 0 | 1 | 2
  readonly log: Logger
}

/** A message about to be written to one subscribed MQTT client (retained and queued ones included). */
export interface Delivery {
  readonly topic: string
  /** The client it would be written to. */
  readonly clientId: string
  /** Who that client authenticated as; `undefined` when anonymous. */
  readonly identity: Identity | undefined
}

/** A message the broker has accepted and routed (node-local: runs on the node where it entered). */
export interface PublishedMessage {
  readonly topic: string
  readonly payload: Buffer
  readonly qos: 0 | 1 | 2
  readonly retain: boolean
  /** `null` for broker-internal publishes (`$SYS/...`, `broker.publish()`). */
  readonly clientId: string | null
  /**
   * With tracing on (`tracing.otlpUrl`), the span that received this event: work done
   * for it later (a webhook delivery, maybe on another node) continues its trace.
   * `undefined` when tracing is off, and for publishes that carry no event.
   */
  readonly trace: TraceCarrier | undefined
}

/** A span as W3C Trace Context carries it: what work done later, or elsewhere, continues. */
export interface TraceCarrier {
  /** `00-<trace-id>-<span-id>-<trace-flags>`. */
  readonly traceparent: string
  /** The trace's `tracestate`, when it has one. */
  readonly tracestate?: string
}

/**
 * What plugins get of the broker's OpenTelemetry tracing (`ctx.tracing`), only when
 * `tracing.otlpUrl` is set. Spans started with `tracer` are exported with the broker's.
 */
export interface PluginTracing {
  /** The broker's own tracer (its own provider: one registered globally is left alone). */
  readonly tracer: Tracer
  /**
   * Note a step of a publish's check that ran from `startedAt` (a `performance.now()`
   * reading) until now, `failure` when it refused the publish: once the publish is
   * decided, the step becomes a span named `name`, child of the publish's `receive` span.
   */
  step: (attempt: PublishAttempt, name: string, startedAt: number, failure?: unknown) => void
  /**
   * The context whose span is the one `carried` names (`remote`: a span of another
   * service): a span started in it is that span's child. `undefined` when `carried`
   * is not a valid `traceparent`.
   */
  context: (carried: TraceCarrier, remote: boolean) => Context | undefined
}
