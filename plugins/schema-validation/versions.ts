import { createHash } from 'node:crypto'
import type { AnySchemaObject } from 'ajv'
import type { CompatibilityLevel } from './compatibility.js'

/** `enforce`: an event that fails its type's schema is refused; `shadow`: it passes, audited `would_reject`. */
export type SchemaMode = 'enforce' | 'shadow'
export const SCHEMA_MODES: readonly SchemaMode[] = ['enforce', 'shadow']

/** A type's own settings; what it leaves out comes from the config's defaults. */
export interface TypeConfig {
  readonly compatibility?: CompatibilityLevel
  readonly mode?: SchemaMode
}

/** One registered version of a CloudEvent type's schema, as the stores keep it. */
export interface SchemaVersion {
  readonly type: string
  /** 1, 2, …: the order of registration within the type. */
  readonly version: number
  /** SHA-256 of the schema's canonical JSON: the same schema is the same version. */
  readonly fingerprint: string
  readonly schema: AnySchemaObject
  readonly registeredAt: string
  /** The file of `schemas.dir` it was registered from, if it came from one. */
  readonly file?: string
}

/** A type's versions, oldest first, and its settings. */
export interface TypeHistory {
  readonly versions: readonly SchemaVersion[]
  readonly config: TypeConfig
}

/**
 * JSON with object keys sorted at every level: two schemas that differ only in key
 * order (or whitespace) are one version, whichever node or editor wrote them.
 */
export function canonicalJson (value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((item) => canonicalJson(item === undefined ? null : item)).join(',')}]`
  if (typeof value === 'object' && value !== null) {
    const keys = Object.keys(value).sort()
    const parts: string[] = []
    for (const key of keys) {
      const item: unknown = Reflect.get(value, key)
      if (item !== undefined) parts.push(`${JSON.stringify(key)}:${canonicalJson(item)}`)
    }
    return `{${parts.join(',')}}`
  }
  return JSON.stringify(value) ?? 'null'
}

export function fingerprintOf (schema: unknown): string {
  return createHash('sha256').update(canonicalJson(schema)).digest('hex')
}

/** The settings in force for a type: its own, else the defaults. */
export function effectiveConfig (config: TypeConfig | undefined, defaults: Required<TypeConfig>): Required<TypeConfig> {
  return { compatibility: config?.compatibility ?? defaults.compatibility, mode: config?.mode ?? defaults.mode }
}
