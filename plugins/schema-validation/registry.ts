import type { AnySchemaObject, ValidateFunction } from 'ajv'
import { readSchemaFolder, splitDocuments, DRAFT_BY_URI, describe, draftOf, type Draft, type SchemaDocument } from './folder.js'
import { SchemaFileError } from '../../src/core/index.js'
import { documentResolver, narrowings, type JsonSchema, type RefResolver } from './compatibility.js'
import { Linker, type Latest } from './linker.js'
import { effectiveConfig, fingerprintOf, type SchemaMode, type SchemaVersion, type TypeConfig } from './versions.js'
import type { CompatibilityLevel } from './compatibility.js'

/** One compiled version of a type's schema. */
export interface CompiledVersion {
  readonly type: string
  readonly version: number
  readonly draft: Draft
  readonly schema: AnySchemaObject
  /** The schema's own `$id`, when it has one: a `dataschema` naming it selects this version (the latest with it). */
  readonly id?: string
  readonly file?: string
  readonly registeredAt: string
  readonly validate: ValidateFunction
  /** The version of each other type whose schema a `$ref` of this one reached when it was compiled. */
  readonly binds: ReadonlyMap<string, number>
}

/** A schema compiled ahead of its registration (`prepare`). */
export interface Prepared {
  readonly draft: Draft
  readonly validate: ValidateFunction
  readonly binds: ReadonlyMap<string, number>
  readonly fingerprint: string
}

/** A type's latest version as `GET /api/schemas` lists it. */
export interface SchemaEntry {
  readonly type: string
  /** File name within the schema folder, or `<type>.json` for a version registered through the API. */
  readonly file: string
  readonly id?: string
  readonly draft: Draft
  readonly schema: AnySchemaObject
  readonly version: number
  readonly versions: number
  readonly compatibility: CompatibilityLevel
  readonly mode: SchemaMode
}

/** Everything a registry is built from: what a validation worker is started with. */
export interface RegistrySnapshot {
  /** Files of shared definitions (`_*.json`): no type, reached by `$ref`. */
  readonly definitions: readonly SchemaDocument[]
  readonly versions: readonly SchemaVersion[]
  readonly configs: Readonly<Record<string, TypeConfig>>
  readonly defaults: Required<TypeConfig>
}

/** A change to apply to a registry, as the live registry sends it to its workers. */
export type RegistryChange =
  | { readonly kind: 'version', readonly version: SchemaVersion }
  | { readonly kind: 'config', readonly type: string, readonly config: TypeConfig }

export const DEFAULT_TYPE_CONFIG: Required<TypeConfig> = { compatibility: 'BACKWARD', mode: 'enforce' }

/** `…/schemas/<type>/versions/<n>`: a `dataschema` naming a version of the registry's API. */
const VERSION_URL = /\/schemas\/([^/?#]+)\/versions\/([1-9][0-9]{0,8})$/

interface TypeState {
  versions: CompiledVersion[]
  config: TypeConfig
}

/**
 * The compiled registry: every version of every type, and the shared definitions they
 * `$ref`. Each version is compiled once, in an ajv instance of its own (draft 2020-12 or
 * draft-07, picked by `$schema`; 2020-12 when absent) that holds it under its own `$id`
 * and, added as its `$ref`s reach them, the shared definitions and other types' latest
 * versions it needs, nothing else: starting N types compiles N schemas, and versions (or
 * types) that share an `$id` never meet. A `$ref` into another type follows that type's
 * latest version: when it changes, every version that reached it is compiled again, so
 * the verdict never depends on when (or on which node) a version was compiled. A type's
 * latest version is swapped in only once compiled: a check sees the old version or the
 * new, never half.
 */
export class SchemaRegistry {
  readonly #definitions: readonly SchemaDocument[]
  readonly #linker: Linker
  readonly #types = new Map<string, TypeState>()
  readonly #byId = new Map<string, CompiledVersion>()
  readonly #defaults: Required<TypeConfig>
  /** For each type, the versions (`type\nversion`) whose `$ref`s reached its latest: compiled again when it changes. */
  readonly #dependents = new Map<string, Set<string>>()
  /** Whether a version of one type is proved at least as strict as another type's version (`select`). */
  readonly #stricter = new Map<string, boolean>()

  /**
   * A registry with `definitions` and no type yet; a broken definition throws a
   * `SchemaFileError` naming its file. `checked`: every schema it will be given was
   * checked against its meta-schema already (a validation worker's registry).
   */
  constructor (definitions: readonly SchemaDocument[], defaults: Required<TypeConfig> = DEFAULT_TYPE_CONFIG, checked = false) {
    this.#definitions = definitions
    this.#defaults = defaults
    this.#linker = new Linker(definitions, checked)
  }

  /** Read and compile every `*.json` file of `dir`, each type's file as its version 1. */
  static async load (dir: string): Promise<SchemaRegistry> {
    return SchemaRegistry.compile(await readSchemaFolder(dir))
  }

  /** Compile schema documents already read: definitions, and each type's file as its version 1. */
  static compile (documents: readonly SchemaDocument[]): SchemaRegistry {
    const { definitions, types } = splitDocuments(documents)
    const registry = new SchemaRegistry(definitions)
    const versions = types.map(({ type, file, schema }): SchemaVersion => ({ type, version: 1, fingerprint: fingerprintOf(schema), schema, registeredAt: '', file }))
    registry.declare(versions)
    for (const version of versions) registry.add(version)
    return registry
  }

  /** Rebuild a registry from what another thread's registry was built from (and checked, as it will check every change it sends). */
  static fromSnapshot (snapshot: RegistrySnapshot): SchemaRegistry {
    const registry = new SchemaRegistry(snapshot.definitions, snapshot.defaults, true)
    registry.declare(snapshot.versions)
    for (const version of snapshot.versions) registry.add(version)
    for (const [type, config] of Object.entries(snapshot.configs)) registry.configure(type, config)
    return registry
  }

  /**
   * Make these versions what other types' `$ref`s find (each type's newest of them, unless
   * a newer one is known), before any of them is compiled: a type may `$ref` a type
   * compiled after it.
   */
  declare (versions: readonly SchemaVersion[]): void {
    this.#linker.declare(versions)
  }

  /**
   * Compile `version` (or adopt `prepared`, the same schema compiled ahead) and make it its
   * type's latest if it is newer (versions arrive in order, but a repeated or older one is
   * harmless). Throws a `SchemaFileError` when it does not compile. Returns the compiled version.
   */
  add (version: SchemaVersion, prepared?: Prepared): CompiledVersion {
    const state = this.#types.get(version.type) ?? { versions: [], config: {} }
    const known = state.versions.find((v) => v.version === version.version)
    if (known !== undefined) return known
    this.declare([version])
    // a prepared schema other than this version's (a race with another node), or one whose $refs reached a version since replaced: compiled afresh
    if (prepared !== undefined && (prepared.fingerprint !== version.fingerprint || !this.#linker.current(version.type, prepared.binds))) prepared = undefined
    const draft = prepared?.draft ?? draftOf(version.schema, version.file ?? version.type)
    const { validate, binds } = prepared ?? this.#linker.compile(draft, version.type, version.schema, version.file ?? `${version.type}.json`, version.file ?? `${version.type} version ${version.version}`)
    const id = typeof version.schema.$id === 'string' ? version.schema.$id : undefined
    const compiled: CompiledVersion = { type: version.type, version: version.version, draft, schema: version.schema, registeredAt: version.registeredAt, validate, binds, ...(id === undefined ? {} : { id }), ...(version.file === undefined ? {} : { file: version.file }) }
    this.#put(compiled)
    this.#rebind(version.type)
    return compiled
  }

  /** Put `compiled` in its type's history (in place of a version compiled before), and note what its `$ref`s reached. */
  #put (compiled: CompiledVersion): void {
    const state = this.#types.get(compiled.type) ?? { versions: [], config: {} }
    // a new array: a reader holding the old one keeps a consistent history
    const versions = [...state.versions.filter((v) => v.version !== compiled.version), compiled].sort((a, b) => a.version - b.version)
    this.#types.set(compiled.type, { versions, config: state.config })
    if (compiled.id !== undefined && versions[versions.length - 1] === compiled) this.#byId.set(compiled.id, compiled)
    const self = `${compiled.type}\n${compiled.version}`
    for (const other of compiled.binds.keys()) this.#dependents.set(other, (this.#dependents.get(other) ?? new Set()).add(self))
  }

  /**
   * Compile again each version whose `$ref`s reached an earlier latest of `type`. One that
   * no longer compiles keeps its validator (`prepare` refuses a version that would do
   * that to a registered one; a node whose shared definitions differ logs it when it adds
   * the version itself).
   */
  #rebind (type: string): void {
    // those of the types claiming the same key too: the one their $refs reach may be this one now
    const keys = new Set([...this.#linker.claimants(type)].flatMap((claimant) => [...this.#dependents.get(claimant) ?? []]))
    for (const key of keys) {
      const [dependentType = '', n = ''] = key.split('\n')
      const dependent = this.version(dependentType, Number(n))
      if (dependent === undefined || this.#linker.current(dependent.type, dependent.binds)) continue
      try {
        this.#put({ ...dependent, ...this.#linker.compile(dependent.draft, dependent.type, dependent.schema, dependent.file ?? `${dependent.type}.json`, `${dependent.type} version ${dependent.version}`) })
      } catch {
        // kept as compiled before: see above
      }
    }
  }

  configure (type: string, config: TypeConfig): void {
    const state = this.#types.get(type)
    this.#types.set(type, { versions: state?.versions ?? [], config })
  }

  /**
   * Compile a schema offered for registration, once: the validator `add` adopts when it
   * becomes a version (one that does not is left to the garbage collector, its ajv instance
   * with it). A string says why it cannot be registered:
   * not a JSON Schema ajv compiles, an unknown `$schema`, a `$ref` that resolves nowhere.
   */
  prepare (type: string, schema: AnySchemaObject, name: string): Prepared | string {
    const draft = DRAFT_BY_URI.get(String(schema.$schema ?? 'https://json-schema.org/draft/2020-12/schema').replace(/#$/, ''))
    if (draft === undefined) return `"$schema" ${JSON.stringify(schema.$schema)} is not draft 2020-12 or draft-07`
    try {
      return { draft, ...this.#linker.compile(draft, type, schema, name, name), fingerprint: fingerprintOf(schema) }
    } catch (err: unknown) {
      return describe(err instanceof SchemaFileError && err.cause !== undefined ? err.cause : err)
    }
  }

  /**
   * Why `schema`, as `type`'s next version, would break a version whose `$ref`s reach
   * `type`'s latest (it no longer compiles with it: a definition it reaches removed, an
   * `$id` changed), or `undefined`.
   */
  breaks (type: string, schema: AnySchemaObject, name: string): string | undefined {
    const latest = this.#linker.latest(type)
    // what the dependents were compiled with already (a file declared at start-up)
    if (latest !== undefined && (latest.schema === schema || fingerprintOf(latest.schema) === fingerprintOf(schema))) return undefined
    const candidate: Latest = { schema, file: name, type, version: (latest?.version ?? 0) + 1 }
    for (const key of this.#dependents.get(type) ?? []) {
      const [dependentType = '', n = ''] = key.split('\n')
      const dependent = this.version(dependentType, Number(n))
      if (dependent?.binds.has(type) !== true || dependentType === type) continue
      try {
        this.#linker.compile(dependent.draft, dependent.type, dependent.schema, dependent.file ?? `${dependent.type}.json`, `${dependent.type} version ${dependent.version}`, candidate)
      } catch (err: unknown) {
        return `"${dependent.type}" version ${dependent.version} $refs this type's latest version and would no longer compile with it: ${describe(err instanceof SchemaFileError && err.cause !== undefined ? err.cause : err)}`
      }
    }
    return undefined
  }

  /**
   * The version an event of `type` is checked against: the one its `dataschema` names (a
   * version URL or an `$id`, of its type or another) when the compatibility checker
   * proves it at least as strict as the type's latest (an older version under BACKWARD,
   * a stricter profile), else the latest: an event cannot pick a laxer schema than its
   * type's, whatever the type's rule let through.
   */
  select (type: string, dataschema: string | undefined): CompiledVersion | undefined {
    const latest = this.latest(type)
    if (dataschema === undefined) return latest
    const named = this.#named(dataschema)
    if (named === undefined || latest === undefined || named === latest) return latest
    return this.#atLeastAsStrict(named, latest) ? named : latest
  }

  /** Whether every instance `named` accepts `latest` accepts too; proved once per pair. */
  #atLeastAsStrict (named: CompiledVersion, latest: CompiledVersion): boolean {
    const key = `${named.type}\n${named.version}\n${latest.type}\n${latest.version}`
    let proved = this.#stricter.get(key)
    if (proved === undefined) {
      proved = narrowings(named.schema, latest.schema, this.resolver()).length === 0
      this.#stricter.set(key, proved)
    }
    return proved
  }

  latest (type: string): CompiledVersion | undefined {
    const versions = this.#types.get(type)?.versions
    return versions?.[versions.length - 1]
  }

  version (type: string, version: number): CompiledVersion | undefined {
    return this.#types.get(type)?.versions.find((v) => v.version === version)
  }

  history (type: string): readonly CompiledVersion[] {
    return this.#types.get(type)?.versions ?? []
  }

  /** The type's settings in force: its own, else the defaults. */
  config (type: string): Required<TypeConfig> {
    return effectiveConfig(this.#types.get(type)?.config, this.#defaults)
  }

  /** The type's own settings, without the defaults. */
  ownConfig (type: string): TypeConfig {
    return this.#types.get(type)?.config ?? {}
  }

  get defaults (): Required<TypeConfig> {
    return this.#defaults
  }

  /** Every type with at least one version, sorted. */
  types (): string[] {
    return [...this.#types].filter(([, state]) => state.versions.length > 0).map(([type]) => type).sort()
  }

  /** The latest validator of `type`, or `undefined` when none is registered. */
  forType (type: string): ValidateFunction | undefined {
    return this.latest(type)?.validate
  }

  /** The validator whose schema has `$id` equal to `id` (the latest version with it). */
  forId (id: string): ValidateFunction | undefined {
    return this.#byId.get(id)?.validate
  }

  apply (change: RegistryChange, prepared?: Prepared): void {
    if (change.kind === 'version') this.add(change.version, prepared)
    else this.configure(change.type, change.config)
  }

  /** What this registry was built from, plain JSON: for a worker thread. */
  snapshot (): RegistrySnapshot {
    const versions: SchemaVersion[] = []
    const configs: Record<string, TypeConfig> = {}
    for (const [type, state] of this.#types) {
      configs[type] = state.config
      for (const v of state.versions) versions.push({ type, version: v.version, fingerprint: fingerprintOf(v.schema), schema: v.schema, registeredAt: v.registeredAt, ...(v.file === undefined ? {} : { file: v.file }) })
    }
    return { definitions: this.#definitions, versions, configs, defaults: this.#defaults }
  }

  /** The shared definitions (files starting with `_`): no type, reached by `$ref`. */
  definitions (): readonly SchemaDocument[] {
    return this.#definitions
  }

  /** The shared definitions and every type's latest version, as files: what the catalog summarizes fields from. */
  documents (): readonly SchemaDocument[] {
    return [...this.#definitions, ...this.types().flatMap((type) => {
      const latest = this.latest(type)
      return latest === undefined ? [] : [{ file: latest.file ?? `${type}.json`, schema: latest.schema }]
    })]
  }

  /** A `$ref` resolver over the shared definitions, for the compatibility checker. */
  resolver (): RefResolver {
    const documents = new Map<string, JsonSchema>()
    for (const { file, schema } of this.#definitions) documents.set(typeof schema.$id === 'string' ? schema.$id : file, schema)
    return documentResolver(documents)
  }

  /** Every type's latest version and settings. */
  list (): SchemaEntry[] {
    return this.types().flatMap((type) => {
      const latest = this.latest(type)
      if (latest === undefined) return []
      const { compatibility, mode } = this.config(type)
      return [{
        type,
        file: latest.file ?? `${type}.json`,
        ...(latest.id === undefined ? {} : { id: latest.id }),
        draft: latest.draft,
        schema: latest.schema,
        version: latest.version,
        versions: this.history(type).length,
        compatibility,
        mode
      }]
    })
  }

  #named (dataschema: string): CompiledVersion | undefined {
    const byId = this.#byId.get(dataschema)
    if (byId !== undefined) return byId
    const url = VERSION_URL.exec(dataschema)
    if (url === null) return undefined
    let type: string
    try {
      type = decodeURIComponent(url[1] ?? '')
    } catch {
      return undefined
    }
    return this.version(type, Number(url[2]))
  }
}
