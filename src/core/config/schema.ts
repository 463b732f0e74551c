import { Ajv, type ValidateFunction } from 'ajv'
import addFormats from 'ajv-formats'
import { KindGuard, Type, type TObject, type TSchema } from '@sinclair/typebox'
import { ConfigError } from '../errors.js'
import { CORE_SECTIONS } from './core-sections.js'
import { SETTING_KEYWORD, SettingMetaSchema, type ConfigSection } from './section.js'

/** The core's sections, then the given ones; the same section given twice counts once. */
export function withCoreSections (sections: readonly ConfigSection[]): readonly ConfigSection[] {
  return [...new Set<ConfigSection>([...CORE_SECTIONS, ...sections])]
}

/**
 * The config's JSON Schema: each section's schema under its key, in the order given.
 * Sections sharing a key merge their properties; a property two of them define is a
 * mistake of their authors, refused before any config is read.
 */
export function assembleSchema (sections: readonly ConfigSection[]): TObject {
  const properties: Record<string, TSchema> = {}
  for (const section of sections) {
    const before = properties[section.key]
    properties[section.key] = before === undefined ? section.schema : mergeSections(section.key, before, section.schema)
  }
  return Type.Object(properties, { additionalProperties: false })
}

function mergeSections (key: string, first: TSchema, second: TSchema): TSchema {
  if (!KindGuard.IsObject(first) || !KindGuard.IsObject(second)) {
    throw new ConfigError('config sections', key, 'is defined by two sections, and only objects can share a key')
  }
  for (const name of Object.keys(second.properties)) {
    if (Object.hasOwn(first.properties, name)) throw new ConfigError('config sections', `${key}.${name}`, 'is defined by two sections')
  }
  const merged = Type.Object({ ...first.properties, ...second.properties }, { additionalProperties: false })
  return KindGuard.IsOptional(first) && KindGuard.IsOptional(second) ? Type.Optional(merged) : merged
}

/** The schema of the setting at a dotted key path, if there is one. */
export function schemaAt (root: TSchema, path: string): TSchema | undefined {
  let node: TSchema | undefined = root
  for (const key of path.split('.')) {
    node = node !== undefined && KindGuard.IsObject(node) ? node.properties[key] : undefined
  }
  return node
}

/**
 * What `schema` holds when nothing is set: its `default`, or for an object its properties'
 * defaults; an optional property without a default stays absent.
 */
export function defaultOf (schema: TSchema): unknown {
  const value: unknown = schema.default
  if (value !== undefined) return structuredClone(value)
  if (!KindGuard.IsObject(schema)) return undefined
  const out: Record<string, unknown> = {}
  for (const [name, property] of Object.entries(schema.properties)) {
    const child = KindGuard.IsOptional(property) ? structuredClone(property.default) : defaultOf(property)
    if (child !== undefined) out[name] = child
  }
  return out
}

/** The validators a load needs: a layer as given, a layer of strings (env, flags), the merged whole. */
export interface Validators<T> {
  readonly layer: ValidateFunction
  readonly stringLayer: ValidateFunction
  readonly whole: ValidateFunction<T>
}

/** `T` is the type of the sections `root` was assembled from: what passes `whole` is one. */
export function compileValidators<T> (root: TObject): Validators<T> {
  // each layer is checked on its own, before anything fills what it leaves out
  const partial = withoutRequired(root)
  return {
    layer: makeAjv({ coerceTypes: false, useDefaults: false }).compile(partial),
    // env variables and flags arrive as strings: "1883" must become 1883, "true" true
    stringLayer: makeAjv({ coerceTypes: true, useDefaults: false }).compile(partial),
    // the merged config starts from the defaults; filled here are the defaults inside what a
    // layer added: a validation rule's, the port of an MQTT/TLS listener
    whole: makeAjv({ coerceTypes: false, useDefaults: true }).compile<T>(root)
  }
}

/** An Ajv that knows the settings' metadata keyword: strict mode refuses keywords it does not know. */
function makeAjv (options: { readonly coerceTypes: boolean, readonly useDefaults: boolean }): Ajv {
  const ajv = new Ajv({ allErrors: false, strict: true, verbose: true, ...options })
  addFormats.default(ajv)
  // an annotation: nothing to check in the data, its own shape is checked in every schema
  ajv.addKeyword({ keyword: SETTING_KEYWORD, metaSchema: SettingMetaSchema })
  return ajv
}

/** A copy of a schema without `required`, at any depth: plain JSON Schema, for Ajv. */
function withoutRequired (schema: TSchema): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [keyword, value] of Object.entries(schema)) {
    if (keyword === 'required') continue
    out[keyword] = value
  }
  if (KindGuard.IsObject(schema)) {
    const properties: Record<string, unknown> = {}
    for (const [name, property] of Object.entries(schema.properties)) properties[name] = withoutRequired(property)
    out.properties = properties
  }
  if (KindGuard.IsArray(schema)) out.items = withoutRequired(schema.items)
  return out
}
