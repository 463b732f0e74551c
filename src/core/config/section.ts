import { Type, type SchemaOptions, type Static, type TOptional, type TSchema, type TUnsafe } from '@sinclair/typebox'

/**
 * How one setting is reached from outside and explained: what the README's table and
 * `ce-broker --help` show. It sits in the setting's schema, under `setting`.
 * Written as a schema itself so that Ajv checks every section's metadata when it compiles it.
 */
export const SettingMetaSchema = Type.Object({
  /** The `CE_BROKER_*` variable that sets it; absent for what only a config file can give (lists). */
  env: Type.Optional(Type.TemplateLiteral('CE_BROKER_${string}')),
  /** The command-line flag that sets it. */
  flag: Type.Optional(Type.TemplateLiteral('--${string}')),
  /** What the flag takes, in the README (`N`, `URL`); `--help` says `VALUE`. */
  flagArg: Type.Optional(Type.String({ minLength: 1 })),
  /** One line of Markdown: the README's "meaning"; `--help` shows it without the markup. */
  doc: Type.String({ minLength: 1 }),
  /** Markdown shown as the default where the schema's `default` cannot say it: computed at start-up, or applied elsewhere. */
  shownDefault: Type.Optional(Type.String({ minLength: 1 })),
  /** Said after the default in the README, e.g. `256 KiB`. */
  defaultNote: Type.Optional(Type.String({ minLength: 1 }))
}, { additionalProperties: false })

export type SettingMeta = Static<typeof SettingMetaSchema>

/** The schema keyword a setting's metadata sits under; Ajv is told it is an annotation. */
export const SETTING_KEYWORD = 'setting'

/** A setting's metadata as schema options: `Type.Integer({ minimum: 0, default: 1883, ...setting({ env, doc }) })`. */
export function setting (meta: SettingMeta): { readonly setting: SettingMeta } {
  return { [SETTING_KEYWORD]: meta }
}

/**
 * One option that sets several settings at once (`--host` sets `mqtt.host` and `http.host`).
 * Its default, in the README and `--help`, is that of its first path.
 */
export interface Shortcut extends SettingMeta {
  readonly paths: readonly [string, ...string[]]
  readonly env: `CE_BROKER_${string}`
}

/** Recursively read-only: the config is deep-frozen once loaded. */
export type DeepReadonly<T> = T extends ReadonlyArray<infer U>
  ? ReadonlyArray<DeepReadonly<U>>
  : T extends object ? { readonly [K in keyof T]: DeepReadonly<T[K]> } : T

/** The settings a schema describes, as the loaded (frozen) config holds them. */
export type Settings<S extends TSchema> = DeepReadonly<Static<S>>

/**
 * A part of the config with its own top-level key, owned by the core or by a plugin:
 * `{ key: 'audit', schema: Type.Object({ … }) }`. Its schema carries the defaults
 * (`default`), the checks (JSON Schema) and each setting's metadata (`setting`);
 * the types, the defaults, the `CE_BROKER_*` variables, the flags and the README's
 * table are derived from it. Sections with the same key (the core's `auth.apiKeys`,
 * the auth plugin's `auth.users`) merge their properties; two defining the same
 * property stop start-up. An optional schema (`Type.Optional`) makes the key optional.
 */
export interface ConfigSection<K extends string = string, S extends TSchema = TSchema> {
  readonly key: K
  readonly schema: S
  readonly shortcuts?: readonly Shortcut[]
  /**
   * What JSON Schema cannot say, checked on the whole validated config (so defaults are
   * filled in): throws a `ConfigError` with source `config` naming the key path.
   * A method so that a section's narrower `value` still makes a `ConfigSection`.
   */
  check? (value: Settings<S>): void
}

/** `section` itself, typed: keeps its key as a literal type, so the config's type knows it. */
export function configSection<const K extends string, S extends TSchema> (section: ConfigSection<K, S>): ConfigSection<K, S> {
  return section
}

/** An enumeration of strings (`enum`, whose errors list the allowed values), typed as their union. */
export function enumOf<const T extends readonly string[]> (values: T, options: SchemaOptions = {}): TUnsafe<T[number]> {
  return Type.Unsafe<T[number]>({ ...options, enum: [...values] })
}

/** The settings one section adds to the config, under its key; optional when its schema is. */
export type SectionConfig<C> = C extends ConfigSection<infer K, infer S>
  ? S extends TOptional<TSchema> ? { readonly [P in K]?: Settings<S> } : { readonly [P in K]: Settings<S> }
  : never

/** Settings of sections the core does not know: plugins read their own. */
export interface PluginSections {
  readonly [key: string]: unknown
}

/**
 * The settings a list of sections adds: every section's, when the list's type is known
 * element by element (a tuple, `as const`); an open record when it is any list.
 */
export type SectionsConfig<L extends readonly ConfigSection[]> =
  L extends readonly [infer First, ...infer Rest extends readonly ConfigSection[]]
    ? SectionConfig<First> & SectionsConfig<Rest>
    : L extends readonly [] ? unknown : PluginSections

/** Recursively optional and writable: the shape of a config layer. */
export type DeepPartial<T> = {
  -readonly [K in keyof T]?: T[K] extends ReadonlyArray<infer U> ? ReadonlyArray<DeepPartial<U>> : T[K] extends object ? DeepPartial<T[K]> : T[K]
}
