import { readFileSync } from 'node:fs'
import type { ErrorObject } from 'ajv'
import { parse as parseYaml } from 'yaml'
import { ConfigError, messageOf } from '../errors.js'
import type { CoreConfig } from './core-sections.js'
import { configOptions, type OptionSpec } from './options.js'
import { assembleSchema, compileValidators, defaultOf, withCoreSections } from './schema.js'
import type { ConfigSection, PluginSections, SectionsConfig } from './section.js'

/** The config of the core's sections and of `L`'s: validated, defaults filled in, deep-frozen. */
export type ConfigOf<L extends readonly ConfigSection[]> = CoreConfig & SectionsConfig<L>

/** The config as the core sees it: its own settings, and the plugins' under their keys. */
export type LoadedConfig = CoreConfig & PluginSections

/** Options for `loadConfig`; each layer is optional. */
export interface LoadConfigOptions {
  /** Config file contents already parsed (see `readConfigFile`), and its name for messages. */
  readonly file?: { readonly name: string, readonly data: unknown }
  /** CLI flag values by flag name without dashes (`mqtt-port`), as `util.parseArgs` returns them. */
  readonly flags?: Readonly<Record<string, string | boolean | ReadonlyArray<string | boolean> | undefined>>
  /** Environment; only `CE_BROKER_*` variables are read. */
  readonly env?: Readonly<Record<string, string | undefined>>
}

/** Where a layer comes from, for error messages, and how its keys map back to env names or flags. */
interface Layer {
  readonly data: Record<string, unknown>
  readonly source: string
  readonly coerce: boolean
  /** key path → the env variable or flag that set it, to name it in errors. */
  readonly origin?: ReadonlyMap<string, string>
}

/** Each loaded config, and the sections it was loaded with: see `loadedWith`. */
const loadedSections = new WeakMap<object, ReadonlySet<ConfigSection>>()

/**
 * Merge the defaults < `input` (programmatic) < config file < CLI flags < `CE_BROKER_*` env
 * (PRODUCT §1: flags override the file, environment variables override both),
 * validate every layer and the result, and return it deep-frozen. The config holds the
 * core's sections and those given in `options.sections` (the plugins'): a key none of
 * them defines is refused. Throws a `ConfigError` naming the source, the key path and the value.
 */
export function loadConfig<const L extends readonly ConfigSection[] = readonly []> (
  input: unknown = {},
  options: LoadConfigOptions & { readonly sections?: L } = {}
): ConfigOf<L> {
  const sections = withCoreSections(options.sections ?? [])
  const root = assembleSchema(sections)
  const validators = compileValidators<ConfigOf<L>>(root)
  const known = configOptions(sections)
  const layers: Layer[] = [{ data: asObject(input, 'createBroker() options'), source: 'createBroker() options', coerce: false }]
  if (options.file !== undefined) {
    layers.push({ data: asObject(options.file.data, `config file ${options.file.name}`), source: `config file ${options.file.name}`, coerce: false })
  }
  if (options.flags !== undefined) layers.push(fromFlags(options.flags, known))
  if (options.env !== undefined) layers.push(fromEnv(options.env, known))

  let merged = asObject(defaultOf(root), 'defaults')
  for (const layer of layers) {
    const validate = layer.coerce ? validators.stringLayer : validators.layer
    if (!validate(layer.data)) throw layerError(layer, validate.errors)
    merged = deepMerge(merged, layer.data)
  }
  // the same object: `whole` narrows `config` to the sections' type, `merged` stays a record to read by key
  const config = merged
  if (!validators.whole(config)) throw layerError({ data: merged, source: 'config', coerce: false }, validators.whole.errors)
  for (const section of sections) section.check?.(merged[section.key])
  deepFreeze(config)
  loadedSections.set(config, new Set(sections))
  return config
}

/**
 * Whether `config` came out of `loadConfig` with every one of `sections`: then their
 * settings are there, validated, and typed as such. How a reader of sections the core
 * does not know (a plugin's own) gets their type without taking it on trust.
 */
export function loadedWith<const L extends readonly ConfigSection[]> (config: LoadedConfig, sections: L): config is LoadedConfig & SectionsConfig<L> {
  const loaded = loadedSections.get(config)
  return loaded !== undefined && sections.every((section) => loaded.has(section))
}

/** The config nothing sets: every default of the core's sections and the given ones. */
export function configDefaults<const L extends readonly ConfigSection[]> (sections: L): ConfigOf<L> {
  const root = assembleSchema(withCoreSections(sections))
  const validate = compileValidators<ConfigOf<L>>(root).whole
  const value = defaultOf(root)
  if (!validate(value)) throw layerError({ data: asObject(value, 'defaults'), source: 'defaults', coerce: false }, validate.errors)
  return value
}

/** Read and parse a YAML or JSON config file (YAML is a superset of JSON). */
export function readConfigFile (path: string): { name: string, data: unknown } {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err: unknown) {
    throw new ConfigError(`config file ${path}`, '', `cannot be read: ${messageOf(err)}`, { cause: err })
  }
  try {
    return { name: path, data: parseYaml(text) ?? {} }
  } catch (err: unknown) {
    throw new ConfigError(`config file ${path}`, '', `is neither valid YAML nor JSON: ${messageOf(err)}`, { cause: err })
  }
}

function fromFlags (flags: NonNullable<LoadConfigOptions['flags']>, known: readonly OptionSpec[]): Layer {
  const data: Record<string, unknown> = {}
  const origin = new Map<string, string>()
  for (const spec of known) {
    if (spec.flag === undefined) continue
    const value = flags[spec.flag.slice(2)]
    if (typeof value !== 'string') continue
    for (const path of spec.paths) {
      setPath(data, path, value)
      origin.set(path, `flag ${spec.flag}`)
    }
  }
  return { data, source: 'command line', coerce: true, origin }
}

function fromEnv (env: Readonly<Record<string, string | undefined>>, known: readonly OptionSpec[]): Layer {
  const byName = new Map<string, OptionSpec>(known.map((spec) => [spec.env, spec]))
  const data: Record<string, unknown> = {}
  const origin = new Map<string, string>()
  // CE_BROKER_HOST first so that CE_BROKER_MQTT_HOST / CE_BROKER_HTTP_HOST refine it
  const names = Object.keys(env).filter((name) => name.startsWith('CE_BROKER_')).sort((a, b) => a.length - b.length)
  for (const name of names) {
    const value = env[name]
    if (value === undefined) continue
    const spec = byName.get(name)
    if (spec === undefined) {
      throw new ConfigError(`env ${name}`, '', `is not a known setting (got "${value}"); known: ${[...byName.keys()].join(', ')}`)
    }
    for (const path of spec.paths) {
      setPath(data, path, value)
      origin.set(path, `env ${name}`)
    }
  }
  return { data, source: 'environment', coerce: true, origin }
}

function layerError (layer: Layer, errors: ErrorObject[] | null | undefined): ConfigError {
  const first = errors?.[0]
  if (first === undefined) return new ConfigError(layer.source, '', 'is invalid')
  const segments = first.instancePath.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
  let detail: string
  if (first.keyword === 'additionalProperty' || first.keyword === 'additionalProperties') {
    const key = String(first.params.additionalProperty)
    segments.push(key)
    detail = `is not a known key${known(first.parentSchema)}`
  } else if (first.keyword === 'required') {
    segments.push(String(first.params.missingProperty))
    detail = 'is required'
  } else {
    detail = `${first.message ?? first.keyword}, got ${JSON.stringify(getPath(layer.data, segments))}`
    if ((first.keyword === 'pattern' || first.keyword === 'format') && segments.join('.') === 'redis.url') detail = `must be a redis://, rediss:// or redis+sentinel:// URL, got ${JSON.stringify(getPath(layer.data, segments))}`
    const allowed: unknown = first.params.allowedValues
    if (first.keyword === 'enum' && Array.isArray(allowed)) detail += ` (allowed: ${allowed.join(', ')})`
  }
  const path = segments.join('.')
  return new ConfigError(layer.origin?.get(path) ?? layer.source, path, detail)
}

function known (schema: unknown): string {
  if (!isRecord(schema) || !isRecord(schema.properties)) return ''
  return `; known keys: ${Object.keys(schema.properties).join(', ')}`
}

function asObject (value: unknown, source: string): Record<string, unknown> {
  if (value === undefined || value === null) return {}
  if (!isRecord(value)) throw new ConfigError(source, '', `must be an object, got ${JSON.stringify(value)}`)
  return structuredClone(value)
}

function isRecord (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function setPath (target: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split('.')
  let node = target
  for (const key of keys.slice(0, -1)) {
    const next = node[key]
    if (isRecord(next)) {
      node = next
    } else {
      const created: Record<string, unknown> = {}
      node[key] = created
      node = created
    }
  }
  node[keys[keys.length - 1] ?? ''] = value
}

function getPath (source: unknown, keys: readonly string[]): unknown {
  let node = source
  for (const key of keys) node = typeof node === 'object' && node !== null ? Reflect.get(node, key) : undefined
  return node
}

/** Objects merge key by key; anything else (arrays included) is replaced. Inputs are not modified. */
function deepMerge (base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base }
  for (const [key, value] of Object.entries(over)) {
    if (value === undefined) continue
    const current = out[key]
    out[key] = isRecord(current) && isRecord(value) ? deepMerge(current, value) : value
  }
  return out
}

function deepFreeze<T> (value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child)
    Object.freeze(value)
  }
  return value
}
