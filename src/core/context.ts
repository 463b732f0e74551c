import type { FastifyPluginAsync } from 'fastify'
import type { Redis } from 'ioredis'
import type { Registry } from 'prom-client'
import type { BrokerError } from './errors.js'
import type { ConfigSection, LoadedConfig } from './config/index.js'
import type { Logger } from './logger.js'
import type { ConnectAttempt, Delivery, Origin, PluginTracing, PublishAttempt, PublishedMessage, PublishVerdict, SubscribeAttempt, Transport } from './attempts.js'

export type { ConnectAttempt, Delivery, Identity, Origin, PluginTracing, PublishAttempt, PublishedMessage, PublishVerdict, SubscribeAttempt, TraceCarrier, Transport } from './attempts.js'

/** Refuses by throwing (`ConnectRefusedError` for a CONNACK return code); anything else drops the connection. */
export type ConnectHandler = (attempt: ConnectAttempt) => Promise<void> | void
/** Passes by returning; refuses by throwing a `BrokerError`, whose `disposition` decides what happens. */
export type AuthorizePublishHandler = (attempt: PublishAttempt) => Promise<void> | void
/**
 * Sees every publish once its verdict is known, before it is routed: accepted ones
 * and refused ones alike (whatever refused them, the size limit included). Synchronous:
 * enqueue I/O and return; report failures through `ctx.reportError`.
 */
export type DecidedHandler = (attempt: PublishAttempt, verdict: PublishVerdict) => void
/** Passes by returning; refuses (SUBACK 0x80, client stays connected) by throwing. */
export type AuthorizeSubscribeHandler = (attempt: SubscribeAttempt) => Promise<void> | void
/**
 * Whether a message may be written to one subscriber (`false`: not to this client;
 * the others still get it), as Mosquitto checks read access per message. Runs once
 * per message and subscriber, on the node the subscriber is connected to: synchronous,
 * no I/O, no allocation it can avoid. A handler that throws is reported and the
 * message is not written to that client.
 */
export type ForwardHandler = (delivery: Delivery) => boolean
/**
 * Runs as the message is routed; aedes holds back the publisher's next packets until it
 * returns, or until the promise it returns settles (with `--redis`, the publisher's
 * acknowledgement waits for it too: return the promise of durable work, such as a
 * delivery job written to Redis). Report failures through `ctx.reportError`; a rejected
 * promise is reported as well.
 */
export type PublishedHandler = (message: PublishedMessage) => Promise<void> | void

/**
 * Keeps a refused publish: stores its dead-letter record and returns the record's
 * bytes, which the broker publishes on `$DLQ/<topic>`. Synchronous: it runs inside
 * authorizePublish; storage that needs I/O is queued, not awaited. With
 * `keep: false` (a refusal that is told to the publisher but is nothing to replay,
 * such as `not_authorized`) the record is only built and told, not stored.
 */
export type DeadLetterHandler = (attempt: PublishAttempt, error: BrokerError, keep: boolean) => Buffer

/** A CONNECT that was refused, and why (`ConnectRefusedError` carries the CONNACK return code). */
export type ConnectRefusedHandler = (attempt: ConnectAttempt, error: BrokerError) => void

/** Where plugins add their handlers. Each aedes hook is one slot; ours are ordered lists folded into it. */
export interface HookRegistry {
  /** Before the CONNECT is processed; a refusal closes the socket without CONNACK. */
  preConnect: (handler: ConnectHandler) => void
  /** With the credentials; a refusal answers CONNACK with the error's return code (default 5). */
  authenticate: (handler: ConnectHandler) => void
  /**
   * Ask about each publish; the first refusal decides. `idle`, when given, says the
   * handler would let every publish through as it is (a gate with nothing to guard):
   * while every handler is idle, a publish skips the chain (the no-plugin fast path).
   */
  authorizePublish: (handler: AuthorizePublishHandler, options?: { readonly idle?: () => boolean }) => void
  authorizeSubscribe: (handler: AuthorizeSubscribeHandler) => void
  published: (handler: PublishedHandler) => void
  /**
   * Per message and subscriber, before it is written; the first handler returning
   * `false` keeps it from that client. With none registered a delivery costs one length check.
   */
  forward: (handler: ForwardHandler) => void
  /** Every publish's verdict, accepted or refused; runs after the dead-letter handler. */
  decided: (handler: DecidedHandler) => void
  /** The one dead-letter handler; a second registration throws. */
  deadLetter: (handler: DeadLetterHandler) => void
  /** Every refused CONNECT, after the refusal is decided (the audit records login failures). */
  connectRefused: (handler: ConnectRefusedHandler) => void
  /**
   * Which topics carry CloudEvents in structured mode (the plugin that checks them says):
   * the HTTP publish routes wrap a bare `data` body into an event there. Any predicate
   * answering true decides.
   */
  cloudEventTopics: (predicate: (topic: string) => boolean) => void
}

declare const serviceType: unique symbol

/**
 * A value one plugin provides to the plugins loaded after it, found by this key: the
 * dead-letter plugin provides its store, the webhooks plugin its registry. The type
 * parameter makes `ctx.need(key)` typed.
 */
export interface Service<T> {
  readonly name: string
  readonly [serviceType]?: (value: T) => T
}

/** A key for a service: `export const DEAD_LETTERS = service<DeadLetters>('dead-letters')`. */
export function service<T> (name: string): Service<T> {
  return { name }
}

/** An MQTT subscription whose filter matches a topic (`ctx.subscribers`). */
export interface MqttSubscriber {
  readonly clientId: string
  readonly filter: string
  readonly qos: number
}

/** The ports the broker actually bound (port 0 in the config picks a free one). */
export interface BoundPorts {
  readonly mqtt: number
  readonly http: number
  readonly mqttTls?: number
}

/** A message a plugin publishes itself; it skips `authorizePublish`, as aedes' own publishes do. */
export interface OutgoingMessage {
  readonly topic: string
  readonly payload: Buffer | string
  /** Default 0. */
  readonly qos?: 0 | 1 | 2
  /** Default false. */
  readonly retain?: boolean
}

/** Whom a submitted message is published for. */
export interface SubmitOptions {
  readonly origin: Origin
  /** Shown as the publisher in records; `null` when there is no MQTT client. Default null. */
  readonly clientId?: string | null
  /** The dead letter this submission replays. */
  readonly replayOf?: string
}

/**
 * Everything a plugin may use. Plugins get nothing else: no aedes, and other plugins
 * only through the services they provide.
 */
export interface PluginContext {
  /** The plugin's name. */
  readonly name: string
  /** Child logger with `{ plugin: name }`. */
  readonly log: Logger
  readonly config: LoadedConfig
  readonly nodeId: string
  readonly hooks: HookRegistry
  /** This broker's own prom-client registry (never the global one). */
  readonly metrics: Registry
  /** The broker's Redis connection in cluster mode (`redis.url`), `undefined` embedded. Shared: duplicate it to block on it. */
  readonly redis: Redis | undefined
  /**
   * Add HTTP routes (a fastify plugin): registered on the broker's API after the core's,
   * behind the same API keys and error handler. A route names its scope in
   * `config.scope` when `GET` = read, anything else = admin does not fit.
   */
  routes: (routes: FastifyPluginAsync) => void
  /** Offer `value` to the plugins loaded after this one; a second provider of the same key is refused. */
  provide: <T>(key: Service<T>, value: T) => void
  /** A service a plugin loaded earlier provides; throws a `PluginError` naming both when none does. */
  need: <T>(key: Service<T>) => T
  /** The same, `undefined` when no plugin provides it (an optional dependency). */
  find: <T>(key: Service<T>) => T | undefined
  /** Add `key` to the stats each node publishes on `$SYS/ce-broker/<nodeId>/stats`, collected at every publish. */
  stats: (key: string, collect: () => unknown) => void
  /** MQTT subscriptions whose filter matches `topic`: this node's online clients and every session the persistence holds. */
  subscribers: (topic: string) => Promise<readonly MqttSubscriber[]>
  /**
   * The ports the listeners bound, once every one is up; `undefined` before (plugins
   * load before the listeners open, and port 0 in the config is only known then).
   */
  ports: () => BoundPorts | undefined
  /** Publish without the plugin chain; resolves once routed. */
  publish: (message: OutgoingMessage) => Promise<void>
  /**
   * Whether a subscription may receive messages published under the `$` top level
   * `level` (`'$audit'`): a plugin mirroring every event there skips what nobody
   * would get. Filters starting with `+` or `#` never match `$` topics. With Redis it
   * is always true: subscribers on other nodes are not known here.
   */
  listening: (level: string) => boolean
  /**
   * Publish through the whole pipeline, as a client would: resolves `undefined` when
   * accepted and routed, or with the refusal (already dead-lettered or diverted).
   */
  submit: (message: OutgoingMessage, options: SubmitOptions) => Promise<BrokerError | undefined>
  /**
   * Keep a message the plugin could not handle (a webhook delivery that failed for good)
   * as a dead letter: stored with `error` as its reason and published on `$DLQ/<topic>`.
   */
  deadLetter: (message: OutgoingMessage, error: BrokerError, options: SubmitOptions) => void
  /** Count an event outcome in `ce_broker_events_total` (`reason` for rejections). */
  countEvent: (outcome: 'accepted' | 'rejected' | 'duplicate', reason?: string) => void
  /** Log and count a failure that has no caller to return to (published handlers, timers, queues). */
  reportError: (err: unknown, context?: Readonly<Record<string, unknown>>) => void
  /**
   * The broker's tracing when `tracing.otlpUrl` is set, `undefined` otherwise: a plugin
   * checks it once, and does no tracing work per message when it is off.
   */
  readonly tracing: PluginTracing | undefined
}

/** Undoes what a plugin's setup did; runs on close, in reverse load order. */
export type Dispose = () => Promise<void>

/** A plugin bound to its options, ready for `createBroker({ plugins: [...] })`. */
export interface PluginEntry {
  readonly name: string
  readonly dependsOn: readonly string[]
  /** The config sections the plugin owns: loaded, defaulted and validated with the broker's config. */
  readonly sections?: readonly ConfigSection[]
  readonly start: (ctx: PluginContext) => Promise<Dispose | undefined>
}

/**
 * A plugin is a function of its options returning an entry: `schemaValidation({ schemas })`.
 * Calling it only binds the options; setup runs when the broker loads it.
 */
export interface Plugin<O> {
  (options: O): PluginEntry
  readonly pluginName: string
  readonly dependsOn: readonly string[]
  readonly sections?: readonly ConfigSection[]
}

/** Metadata of a plugin. */
export interface PluginMeta {
  /** Plugins that must load before this one; checked at load, naming both. Default none. */
  readonly dependsOn?: readonly string[]
}

/** A plugin's declaration: its name, what must load before it, and its setup. */
export interface PluginSpec<O> extends PluginMeta {
  readonly name: string
  /**
   * The config sections it owns (`configSection({ key, schema })`, a TypeBox schema with
   * defaults and each setting's variable, flag and doc): the broker loads, defaults and
   * validates them with the rest of the config, naming the key in errors; the preset binds
   * the plugin to its section.
   */
  readonly sections?: readonly ConfigSection[]
  /** Registers hooks, routes and services; returns an async dispose (or nothing). */
  readonly setup: (ctx: PluginContext, options: O) => Promise<Dispose | undefined | void>
}

/**
 * Define a plugin: `setup(ctx, options)` registers hooks and returns an async dispose (or nothing).
 *
 * ```ts
 * export const hello = definePlugin<{ greeting: string }>('hello', async (ctx, opts) => {
 *   ctx.hooks.published((msg) => { if (msg.topic === 'hi') ctx.log.info(opts.greeting) })
 * })
 * createBroker({ plugins: [hello({ greeting: 'hola' })] })
 * ```
 */
export function definePlugin<O = void> (spec: PluginSpec<O>): Plugin<O>
export function definePlugin<O = void> (name: string, setup: PluginSpec<O>['setup'], meta?: PluginMeta): Plugin<O>
export function definePlugin<O = void> (first: string | PluginSpec<O>, second?: PluginSpec<O>['setup'], meta: PluginMeta = {}): Plugin<O> {
  const spec: PluginSpec<O> = typeof first === 'string' ? { ...meta, name: first, setup: second ?? noSetup } : first
  const { name, setup, sections } = spec
  const dependsOn = Object.freeze([...(spec.dependsOn ?? [])])
  function bind (options: O): PluginEntry {
    return {
      name,
      dependsOn,
      ...(sections === undefined ? {} : { sections }),
      start: async function startPlugin (ctx) {
        return (await setup(ctx, options)) ?? undefined
      }
    }
  }
  return Object.assign(bind, { pluginName: name, dependsOn, ...(sections === undefined ? {} : { sections }) })
}

async function noSetup (): Promise<undefined> {
  return undefined
}
