import type { AnySchemaObject } from 'ajv'
import { SchemaFileError, type Logger } from '../../src/core/index.js'
import { checkCompatibility, type BreakingChange } from './compatibility.js'
import { readSchemaFolder, splitDocuments } from './folder.js'
import { SchemaRegistry, type Prepared, type RegistryChange } from './registry.js'
import { newVersion, type Candidate, type Registered, type RegistryStore, type Vet } from './store.js'
import { effectiveConfig, fingerprintOf, type TypeConfig, type TypeHistory } from './versions.js'

/** A schema the API was asked to register, and what it can be refused for before the compatibility rule. */
export type Offered =
  | { readonly ok: true, readonly candidate: Candidate, readonly prepared: Prepared }
  | { readonly ok: false, readonly problem: string }

export interface LiveRegistryOptions {
  readonly dir: string
  readonly store: RegistryStore
  readonly defaults: Required<TypeConfig>
  readonly log: Logger
  /** Told each change once it is compiled here: the validation workers apply it too. */
  readonly onChange: (change: RegistryChange) => void
}

/**
 * The registry the broker checks with, kept current: the schema folder's files are
 * registered at start-up (the same content is the same version, so restarts and
 * identical nodes agree; an edit the type's rule refuses stops start-up, naming each
 * breaking change), the API registers more, and changes made by other nodes are read
 * from the store when it tells of them. A version is compiled before it becomes its
 * type's latest, here and then in each worker.
 */
export class LiveRegistry {
  readonly registry: SchemaRegistry
  readonly #options: LiveRegistryOptions
  /**
   * Changes heard while starting (`undefined`: anything), read once the store's first
   * read is in: a change read before would be undone by that older read.
   */
  #heardWhileStarting: Set<string | undefined> | undefined = new Set()

  private constructor (registry: SchemaRegistry, options: LiveRegistryOptions) {
    this.registry = registry
    this.#options = options
  }

  /** Where the versions are kept. */
  get kind (): RegistryStore['kind'] {
    return this.#options.store.kind
  }

  /** Start, or close the store and throw: a registry that did not start holds nothing (the data folder's lock included). */
  static async start (options: LiveRegistryOptions): Promise<LiveRegistry> {
    try {
      return await LiveRegistry.#start(options)
    } catch (err: unknown) {
      await options.store.close()
      throw err
    }
  }

  static async #start (options: LiveRegistryOptions): Promise<LiveRegistry> {
    const { definitions, types } = splitDocuments(await readSchemaFolder(options.dir))
    const live = new LiveRegistry(new SchemaRegistry(definitions, options.defaults), options)
    // followed before the store is read: a change made meanwhile is read again, not missed
    await options.store.watch((type) => {
      if (live.#heardWhileStarting !== undefined) live.#heardWhileStarting.add(type)
      else live.#refresh(type)
    })
    const histories = await options.store.load()
    // every type's latest known before any is compiled: a type may $ref one that comes after it
    const fresh = types.filter(({ type, schema }) => histories.get(type)?.versions.some((v) => v.fingerprint === fingerprintOf(schema)) !== true)
    live.registry.declare([
      ...[...histories.values()].flatMap((history) => history.versions),
      ...fresh.map(({ type, file, schema }) => newVersion(type, (histories.get(type)?.versions.length ?? 0) + 1, { schema, fingerprint: fingerprintOf(schema), file }))
    ])
    for (const [type, history] of histories) live.#absorb(type, history, false)
    // a file registered already (a restart, or another node with the same folder) needs nothing compiled or written
    for (const { type, file, schema } of fresh) {
      const fingerprint = fingerprintOf(schema)
      // compiled before it is stored: a file that does not compile is never registered
      const prepared = live.registry.prepare(type, schema, file)
      if (typeof prepared === 'string') throw new SchemaFileError(file, prepared)
      const breaks = live.registry.breaks(type, schema, file)
      if (breaks !== undefined) throw new SchemaFileError(file, `cannot be registered: ${breaks}`)
      const registered = await options.store.register(type, { schema, fingerprint, file }, live.#vet(schema))
      if (registered.outcome === 'incompatible') {
        const rule = live.registry.config(type).compatibility
        throw new SchemaFileError(file, `is not ${rule} compatible with the versions of "${type}" registered: ${registered.errors.map((e) => `${e.path || '/'}: ${e.message}`).join('; ')} (register it as a new type, or change the type's compatibility)`)
      }
      live.registry.add(registered.version, prepared)
    }
    const heard = live.#heardWhileStarting
    live.#heardWhileStarting = undefined
    for (const type of heard ?? []) live.#refresh(type)
    return live
  }

  /** Parse what the API was given as a type's next version: a JSON Schema object that compiles, naming no other type. */
  offer (type: string, body: unknown): Offered {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) return { ok: false, problem: 'the body must be a JSON Schema object' }
    const schema = body as AnySchemaObject
    const named = schema['x-cloudevents-type']
    if (named !== undefined && named !== type) return { ok: false, problem: `"x-cloudevents-type" is ${JSON.stringify(named)}, not the type of the path, "${type}"` }
    const prepared = this.registry.prepare(type, schema, `${type}.json`)
    if (typeof prepared === 'string') return { ok: false, problem: `not a valid JSON Schema: ${prepared}` }
    const breaks = this.registry.breaks(type, schema, `${type}.json`)
    if (breaks !== undefined) return { ok: false, problem: breaks }
    return { ok: true, candidate: { schema, fingerprint: prepared.fingerprint }, prepared }
  }

  /**
   * Register an offered version (201 `created`, 200 `exists`, 409 `incompatible`); once
   * created it is in force here, compiled once (`offer` did), and on the other nodes as
   * they hear of it.
   */
  async register (type: string, offered: Extract<Offered, { ok: true }>): Promise<Registered> {
    const registered = await this.#options.store.register(type, offered.candidate, this.#vet(offered.candidate.schema))
    if (registered.outcome !== 'incompatible') this.#apply({ kind: 'version', version: registered.version }, offered.prepared)
    return registered
  }

  /** The dry run: the breaking changes the offered schema would be refused for, against the store's current history. */
  async compatibility (type: string, offered: Extract<Offered, { ok: true }>): Promise<readonly BreakingChange[]> {
    const candidate = offered.candidate
    const history = await this.#options.store.read(type) ?? { versions: [], config: this.registry.ownConfig(type) }
    if (history.versions.some((v) => v.fingerprint === candidate.fingerprint)) return []
    return this.#vet(candidate.schema)(history)
  }

  /** Change a type's settings: what `config` names, the rest as it was. */
  async configure (type: string, config: TypeConfig): Promise<Required<TypeConfig>> {
    const history = await this.#options.store.configure(type, { ...this.registry.ownConfig(type), ...config })
    this.#apply({ kind: 'config', type, config: history.config })
    return effectiveConfig(history.config, this.#options.defaults)
  }

  async close (): Promise<void> {
    await this.#options.store.close()
  }

  #vet (schema: AnySchemaObject): Vet {
    return (history: TypeHistory) => {
      const rule = effectiveConfig(history.config, this.#options.defaults).compatibility
      return checkCompatibility(history.versions.map((v) => v.schema), schema, rule, this.registry.resolver())
    }
  }

  #apply (change: RegistryChange, prepared?: Prepared): void {
    // compiled here first: a version that does not compile never reaches a worker
    this.registry.apply(change, prepared)
    this.#options.onChange(change)
  }

  /** Take in a stored history: versions not compiled yet (in order) and the type's settings. */
  #absorb (type: string, history: TypeHistory, tell: boolean): void {
    for (const version of history.versions) {
      if (this.registry.version(type, version.version) !== undefined) continue
      try {
        if (tell) this.#apply({ kind: 'version', version })
        else this.registry.add(version)
      } catch (err: unknown) {
        // a version another node compiled but this one cannot (its shared definitions differ): checked against the one before
        if (!tell) throw new SchemaFileError(`${type} version ${version.version},`, `registered before (in the ${this.kind} store), does not compile with the shared definitions of schemas.dir: ${err instanceof SchemaFileError && err.cause instanceof Error ? err.cause.message : err instanceof Error ? err.message : String(err)}`, { cause: err })
        this.#options.log.error({ err, type, version: version.version }, 'a registered schema version does not compile on this node: its type keeps its earlier version here')
      }
    }
    const own = this.registry.ownConfig(type)
    if (own.compatibility !== history.config.compatibility || own.mode !== history.config.mode) {
      if (tell) this.#apply({ kind: 'config', type, config: history.config })
      else this.registry.configure(type, history.config)
    }
  }

  /** Another node changed `type` (or, `undefined`, anything may have changed): read it again. */
  #refresh (type: string | undefined): void {
    const read = type === undefined ? this.#options.store.load() : this.#options.store.read(type).then((history) => new Map(history === undefined ? [] : [[type, history]]))
    read.then((histories) => {
      this.registry.declare([...histories.values()].flatMap((history) => history.versions))
      for (const [changed, history] of histories) this.#absorb(changed, history, true)
    }, (err: unknown) => {
      this.#options.log.warn({ err, type }, 'the schema registry could not be read after a change: the next change reads it again')
    })
  }
}

