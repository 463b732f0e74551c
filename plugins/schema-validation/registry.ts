import { readdir, readFile } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { Ajv, type AnySchemaObject, type ValidateFunction } from 'ajv'
import { Ajv2020 } from 'ajv/dist/2020.js'
import addFormats from 'ajv-formats'
import { SchemaFileError, isRfc3339, isRfc3339Date } from '../../src/core/index.js'

/** JSON Schema dialects the registry reads, by their `$schema` URI. */
const DRAFTS = {
  'https://json-schema.org/draft/2020-12/schema': '2020-12',
  'http://json-schema.org/draft-07/schema': 'draft-07'
} as const
export type Draft = (typeof DRAFTS)[keyof typeof DRAFTS]
const DRAFT_BY_URI: ReadonlyMap<string, Draft> = new Map(Object.entries(DRAFTS))

/** One registered event schema, as `GET /api/schemas` lists it. */
export interface SchemaEntry {
  /** The CloudEvent type it checks. */
  readonly type: string
  /** File name within the registry folder. */
  readonly file: string
  /** `$id`, when the schema has one; a `dataschema` attribute naming it selects this schema. */
  readonly id?: string
  readonly draft: Draft
  /** The schema itself. */
  readonly schema: AnySchemaObject
}

/** One schema file as read: its name within the folder and its parsed JSON. */
export interface SchemaDocument {
  readonly file: string
  readonly schema: AnySchemaObject
}

interface Compiled extends SchemaEntry {
  readonly validate: ValidateFunction
}

const TYPE_KEYWORD = 'x-cloudevents-type'

/**
 * A folder of JSON Schema files, one per CloudEvent type, compiled once at
 * start-up. Draft 2020-12 and draft-07 need one ajv instance each; a schema's
 * `$schema` picks it (2020-12 when absent), and `$ref` works across the files of
 * the same draft. Files starting with `_` hold shared definitions only.
 */
export class SchemaRegistry {
  readonly #byType: ReadonlyMap<string, Compiled>
  readonly #byId: ReadonlyMap<string, Compiled>
  readonly #documents: readonly SchemaDocument[]

  private constructor (entries: readonly Compiled[], documents: readonly SchemaDocument[]) {
    this.#documents = documents
    this.#byType = new Map(entries.map((e) => [e.type, e]))
    this.#byId = new Map(entries.flatMap((e) => e.id === undefined ? [] : [[e.id, e] as const]))
  }

  /** Read and compile every `*.json` file of `dir`; a broken file throws a `SchemaFileError` naming it. */
  static async load (dir: string): Promise<SchemaRegistry> {
    let names: string[]
    try {
      names = (await readdir(dir)).filter((name) => name.endsWith('.json')).sort()
    } catch (err: unknown) {
      throw new SchemaFileError(dir, 'cannot be read as a schema folder', { cause: err })
    }
    const documents: SchemaDocument[] = []
    for (const file of names) documents.push({ file, schema: await readSchema(join(dir, file)) })
    return SchemaRegistry.compile(documents)
  }

  /**
   * Compile schema documents already read (what `load` does after reading the folder,
   * and how a validation worker rebuilds the registry from `documents()`).
   */
  static compile (documents: readonly SchemaDocument[]): SchemaRegistry {
    const ajvs: Record<Draft, Ajv> = { '2020-12': makeAjv(new Ajv2020(OPTIONS)), 'draft-07': makeAjv(new Ajv(OPTIONS)) }

    const files: Array<{ file: string, schema: AnySchemaObject, draft: Draft }> = []
    for (const { file, schema } of documents) {
      const declared = schema.$schema
      const draft = declared === undefined ? '2020-12' : DRAFT_BY_URI.get(String(declared).replace(/#$/, ''))
      if (draft === undefined) throw new SchemaFileError(file, `declares "$schema": ${JSON.stringify(declared)}; use draft 2020-12 or draft-07`)
      try {
        ajvs[draft].addSchema(schema, typeof schema.$id === 'string' ? undefined : file)
      } catch (err: unknown) {
        throw new SchemaFileError(file, describe(err), { cause: err })
      }
      files.push({ file, schema, draft })
    }

    const compiled: Compiled[] = []
    const seen = new Map<string, string>()
    for (const { file, schema, draft } of files) {
      if (basename(file).startsWith('_')) continue
      const type = typeof schema[TYPE_KEYWORD] === 'string' ? String(schema[TYPE_KEYWORD]) : file.slice(0, -'.json'.length)
      const earlier = seen.get(type)
      if (earlier !== undefined) throw new SchemaFileError(file, `checks type "${type}", which ${earlier} checks already`)
      seen.set(type, file)
      let validate: ValidateFunction | undefined
      try {
        validate = typeof schema.$id === 'string' ? ajvs[draft].getSchema(schema.$id) : ajvs[draft].getSchema(file)
      } catch (err: unknown) {
        throw new SchemaFileError(file, describe(err), { cause: err })
      }
      if (validate === undefined) throw new SchemaFileError(file, 'could not be compiled')
      compiled.push({ type, file, draft, schema, validate, ...(typeof schema.$id === 'string' ? { id: schema.$id } : {}) })
    }
    return new SchemaRegistry(compiled, documents)
  }

  /** The validator of `type`, or `undefined` when none is registered. */
  forType (type: string): ValidateFunction | undefined {
    return this.#byType.get(type)?.validate
  }

  /** The validator whose schema has `$id` equal to `id` (a CloudEvent's `dataschema`). */
  forId (id: string): ValidateFunction | undefined {
    return this.#byId.get(id)?.validate
  }

  /** The files this registry was compiled from, shared definitions included; plain JSON, fit for `postMessage`. */
  documents (): readonly SchemaDocument[] {
    return this.#documents
  }

  /** Every event schema, by type. */
  list (): SchemaEntry[] {
    return [...this.#byType.values()].map(({ validate: _validate, ...entry }) => entry)
  }
}

// strictRequired off: a schema may require properties that an allOf/$ref branch defines
const OPTIONS = { strict: true, strictRequired: false, allErrors: true, allowUnionTypes: true } as const

function makeAjv (ajv: Ajv): Ajv {
  addFormats.default(ajv)
  // date and date-time are checked on every event's data: the same RFC 3339 rules as
  // ajv-formats' full mode, on character codes, at a fraction of the cost (see rfc3339.ts)
  ajv.addFormat('date', { type: 'string', validate: isRfc3339Date })
  ajv.addFormat('date-time', { type: 'string', validate: isRfc3339 })
  ajv.addKeyword({ keyword: TYPE_KEYWORD, schemaType: 'string' })
  return ajv
}

async function readSchema (path: string): Promise<AnySchemaObject> {
  const file = basename(path)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err: unknown) {
    throw new SchemaFileError(file, 'cannot be read', { cause: err })
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err: unknown) {
    throw new SchemaFileError(file, `is not JSON: ${describe(err)}`, { cause: err })
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new SchemaFileError(file, 'is not a JSON Schema object')
  return parsed
}

function describe (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
