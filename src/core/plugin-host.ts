import type { FastifyPluginAsync } from 'fastify'
import type { Registry } from 'prom-client'
import type { Redis } from 'ioredis'
import type { LoadedConfig as BrokerConfig } from './config/index.js'
import type { BoundPorts, HookRegistry, MqttSubscriber, OutgoingMessage, PluginContext, PluginEntry, PluginTracing, Service, SubmitOptions } from './context.js'
import { PluginError, type BrokerError } from './errors.js'
import type { Logger } from './logger.js'
import { PluginLoader } from './plugin-loader.js'

/** What the broker gives every plugin's context. */
export interface PluginHostDeps {
  readonly config: BrokerConfig
  readonly log: Logger
  readonly hooks: HookRegistry
  readonly metrics: Registry
  readonly redis: Redis | undefined
  readonly publish: (message: OutgoingMessage) => Promise<void>
  readonly submit: (message: OutgoingMessage, options: SubmitOptions) => Promise<BrokerError | undefined>
  readonly keep: (message: OutgoingMessage, error: BrokerError, options: SubmitOptions) => void
  readonly listening: (level: string) => boolean
  readonly countEvent: PluginContext['countEvent']
  readonly subscribers: (topic: string) => Promise<readonly MqttSubscriber[]>
  /** The bound ports, once every listener is up. */
  readonly ports: () => BoundPorts | undefined
  readonly reportError: (component: string, err: unknown, context?: Readonly<Record<string, unknown>>) => void
  /** The broker's tracing, when `tracing.otlpUrl` is set. */
  readonly tracing: PluginTracing | undefined
  /** Longest a plugin's setup may take, in ms. */
  readonly timeoutMs: number
}

/**
 * Loads the plugins and keeps what they hand the broker: the routes they add, the
 * services they provide each other, the stats they contribute. Everything is given
 * during setup; after `load` the lists are only read.
 */
export class PluginHost {
  /** Routes the plugins added, in load order, for the HTTP API. */
  readonly routes: Array<{ readonly plugin: string, readonly routes: FastifyPluginAsync }> = []
  /** Stats the plugins contribute to `$SYS/ce-broker/<nodeId>/stats`, by key. */
  readonly stats = new Map<string, () => unknown>()
  readonly #services = new Map<string, { readonly provider: string, readonly value: unknown }>()
  readonly #loader: PluginLoader

  constructor (private readonly deps: PluginHostDeps) {
    this.#loader = new PluginLoader((entry) => this.#contextFor(entry), deps.timeoutMs, (err, context) => { deps.reportError('plugin', err, context) })
  }

  /** Load `entries` in order (see `PluginLoader.load`). */
  async load (entries: readonly PluginEntry[]): Promise<void> {
    await this.#loader.load(entries)
  }

  /** Dispose every loaded plugin, last loaded first. */
  async dispose (): Promise<void> {
    await this.#loader.disposeAll()
  }

  #contextFor (entry: PluginEntry): PluginContext {
    const { deps } = this
    const name = entry.name
    return {
      name,
      log: deps.log.child({ plugin: name }),
      config: deps.config,
      nodeId: deps.config.nodeId,
      hooks: deps.hooks,
      metrics: deps.metrics,
      redis: deps.redis,
      publish: deps.publish,
      listening: deps.listening,
      submit: deps.submit,
      deadLetter: deps.keep,
      countEvent: deps.countEvent,
      subscribers: deps.subscribers,
      ports: deps.ports,
      tracing: deps.tracing,
      reportError: (err, context) => { deps.reportError('plugin', err, { plugin: name, ...context }) },
      routes: (routes) => { this.routes.push({ plugin: name, routes }) },
      stats: (key, collect) => {
        if (this.stats.has(key)) throw new PluginError(name, `adds the stats key "${key}", which another plugin adds already`)
        this.stats.set(key, collect)
      },
      provide: (key, value) => {
        const taken = this.#services.get(key.name)
        if (taken !== undefined) throw new PluginError(name, `provides "${key.name}", which plugin "${taken.provider}" provides already`)
        this.#services.set(key.name, { provider: name, value })
      },
      need: (key) => {
        const found = this.#find(key)
        if (found === undefined) throw new PluginError(name, `needs "${key.name}", which no plugin loaded before it provides`)
        return found
      },
      find: (key) => this.#find(key)
    }
  }

  #find<T> (key: Service<T>): T | undefined {
    // the value was stored under the same key by `provide`, which `Service<T>` typed as T
    return this.#services.get(key.name)?.value as T | undefined
  }
}
