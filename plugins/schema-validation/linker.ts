import { Ajv, MissingRefError, type AnySchemaObject, type ValidateFunction } from 'ajv'
import { Ajv2020 } from 'ajv/dist/2020.js'
import addFormats from 'ajv-formats'
import { SchemaFileError, isRfc3339, isRfc3339Date } from '../../src/core/index.js'
import { TYPE_KEYWORD, describe, draftOf, type Draft, type SchemaDocument } from './folder.js'
import type { SchemaVersion } from './versions.js'

/** A schema document a `$ref` may reach: a shared definition (no type) or a type's latest version. */
export interface Source {
  readonly schema: AnySchemaObject
  readonly file: string
  readonly type?: string
  readonly version?: number
}

/** A type's latest version, as a `$ref` reaches it. */
export type Latest = Required<Source>

/** A compiled schema, and the version of each other type its `$ref`s reached. */
export interface Linked {
  readonly validate: ValidateFunction
  readonly binds: ReadonlyMap<string, number>
}

/**
 * What a schema's `$ref`s may reach, and the compiler that reaches it: the shared
 * definitions and each type's latest version (declared for a whole store before any is
 * compiled, so the order of compiling does not matter). A schema is compiled in an ajv
 * instance of its own, under its `$id`, with only the documents its `$ref`s reach added,
 * as ajv asks for them: starting N types compiles N schemas, and schemas that share an
 * `$id` never meet unless one `$ref`s the other.
 */
export class Linker {
  /** The shared definitions by the key a `$ref` names them by. */
  readonly #definitions = new Map<string, Source>()
  readonly #latest = new Map<string, Latest>()
  /** The types whose latest version claims each key; a `$ref` to a key several claim reaches the first by name. */
  readonly #claims = new Map<string, Set<string>>()
  /**
   * One instance per draft that checks schemas against their meta-schema: compiling the
   * meta-schema costs about 8 ms, four times compiling a type's schema, so a fresh
   * instance per version never does it.
   */
  readonly #meta: Readonly<Record<Draft, Ajv>> = { '2020-12': makeAjv('2020-12'), 'draft-07': makeAjv('draft-07') }

  /** Whether the schemas were checked against their meta-schema by the thread that sent them (a validation worker's). */
  readonly #checked: boolean

  /** A linker over `definitions`; a broken definition throws a `SchemaFileError` naming its file. */
  constructor (definitions: readonly SchemaDocument[], checked = false) {
    this.#checked = checked
    for (const { file, schema } of definitions) {
      try {
        // each definition checked once here (a schema ajv takes), so that a broken one is named as itself
        if (!checked) this.#meta[draftOf(schema, file)].addSchema(schema, typeof schema.$id === 'string' ? undefined : file)
      } catch (err: unknown) {
        throw err instanceof SchemaFileError ? err : new SchemaFileError(file, describe(err), { cause: err })
      }
      const key = keyOf(schema, file)
      if (!this.#definitions.has(key)) this.#definitions.set(key, { schema, file })
    }
  }

  /** Make each type's newest of `versions` its latest, unless a newer one is known. */
  declare (versions: readonly SchemaVersion[]): void {
    for (const v of versions) {
      const known = this.#latest.get(v.type)
      if (known !== undefined && known.version >= v.version) continue
      if (known !== undefined) this.#claims.get(keyOf(known.schema, known.file))?.delete(v.type)
      const file = v.file ?? `${v.type}.json`
      this.#latest.set(v.type, { schema: v.schema, file, type: v.type, version: v.version })
      const key = keyOf(v.schema, file)
      this.#claims.set(key, (this.#claims.get(key) ?? new Set()).add(v.type))
    }
  }

  latest (type: string): Latest | undefined {
    return this.#latest.get(type)
  }

  /** The types whose latest claims the same key as `type`'s latest (`type` among them). */
  claimants (type: string): ReadonlySet<string> {
    const latest = this.#latest.get(type)
    return latest === undefined ? new Set() : this.#claims.get(keyOf(latest.schema, latest.file)) ?? new Set([type])
  }

  /** Whether every version a schema of `type` reached (`binds`) is still what its `$ref` finds: its type's latest, first to claim its key. */
  current (type: string, binds: ReadonlyMap<string, number>): boolean {
    for (const [other, version] of binds) {
      const latest = this.#latest.get(other)
      if (latest?.version !== version || firstOtherThan(type, this.#claims.get(keyOf(latest.schema, latest.file)) ?? []) !== other) return false
    }
    return true
  }

  /**
   * Compile `schema` of `type` in an ajv instance of its own, under its `$id` (or `file`,
   * which relative `$ref`s then resolve against), beside the shared definitions of its
   * draft (added, compiled only where a `$ref` reaches them), with the other types'
   * latest versions its `$ref`s reach added as ajv asks for them (ajv's own
   * `compileAsync` loop, without the waiting; `instead` stands for its type's latest,
   * for a candidate's dependents). Throws a `SchemaFileError` naming `name`.
   */
  compile (draft: Draft, type: string, schema: AnySchemaObject, file: string, name: string, instead?: Latest): Linked {
    const ajv = makeAjv(draft)
    const key = keyOf(schema, file)
    const binds = new Map<string, number>()
    const added = new Set([key])
    try {
      if (!this.#checked) this.#meta[draft].validateSchema(schema, true)
      for (const [definitionKey, definition] of this.#definitions) {
        if (definitionKey === key || draftOf(definition.schema, definition.file) !== draft) continue
        added.add(definitionKey)
        // checked against the meta-schema when the linker was made: not again for every schema compiled beside it
        ajv.addSchema(definition.schema, typeof definition.schema.$id === 'string' ? undefined : definition.file, undefined, false)
      }
      ajv.addSchema(schema, typeof schema.$id === 'string' ? undefined : file, undefined, false)
      // the types its $refs reach (and theirs), found by reading the $refs: all added before one compile
      const resolve = (base: string, ref: string): string => ajv.opts.uriResolver.resolve(base, ref)
      const pending = [...documentsReferenced(schema, key, resolve)]
      for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
        if (added.has(next)) continue
        const source = this.#source(next, type, draft, instead)
        if (source === undefined) continue
        added.add(next)
        ajv.addSchema(source.schema, typeof source.schema.$id === 'string' ? undefined : source.file, undefined, false)
        binds.set(source.type ?? '', source.version ?? 0)
        pending.push(...documentsReferenced(source.schema, next, resolve))
      }
      // what reading the $refs missed (a $ref from a definition into a type), as ajv asks for it
      for (;;) {
        try {
          const validate = ajv.getSchema(key)
          if (validate === undefined) throw new Error('could not be compiled')
          return { validate, binds }
        } catch (err: unknown) {
          if (!(err instanceof MissingRefError) || added.has(err.missingSchema)) throw err
          const source = this.#source(err.missingSchema, type, draft, instead)
          if (source === undefined) throw err
          added.add(err.missingSchema)
          // checked against the meta-schema when it was registered: not again for every schema that reaches it
          ajv.addSchema(source.schema, typeof source.schema.$id === 'string' ? undefined : source.file, undefined, false)
          if (source.type !== undefined && source.version !== undefined) binds.set(source.type, source.version)
        }
      }
    } catch (err: unknown) {
      throw new SchemaFileError(name, describe(err), { cause: err })
    }
  }

  /** The document a `$ref` from a schema of `type` names by `key`: another type's latest of the same draft (the definitions are there already). */
  #source (key: string, type: string, draft: Draft, instead?: Latest): Source | undefined {
    if (this.#definitions.has(key)) return undefined
    const claimants = [...this.#claims.get(key) ?? []].filter((other) => other !== instead?.type)
    if (instead !== undefined && keyOf(instead.schema, instead.file) === key) claimants.push(instead.type)
    const claimant = firstOtherThan(type, claimants)
    if (claimant === undefined) return undefined
    const source = instead?.type === claimant ? instead : this.#latest.get(claimant)
    return source !== undefined && draftOf(source.schema, source.file) === draft ? source : undefined
  }
}

/**
 * The documents (URIs without a fragment) the `$ref`s of `schema` name, resolved as ajv
 * resolves them: against the base URI `base`, or a nested `$id`'s. Iterative: a deep
 * schema cannot overflow the stack.
 */
function documentsReferenced (schema: AnySchemaObject, base: string, resolve: (base: string, ref: string) => string): Set<string> {
  const found = new Set<string>()
  const stack: Array<{ readonly node: unknown, readonly base: string }> = [{ node: schema, base }]
  for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
    const { node } = item
    if (typeof node !== 'object' || node === null) continue
    if (Array.isArray(node)) {
      for (const child of node) stack.push({ node: child, base: item.base })
      continue
    }
    const here = node !== schema && typeof Reflect.get(node, '$id') === 'string' ? resolve(item.base, String(Reflect.get(node, '$id'))) : item.base
    for (const [keyword, child] of Object.entries(node)) {
      if (keyword === '$ref' && typeof child === 'string') {
        const document = resolve(here, child).replace(/#.*$/, '')
        if (document !== '') found.add(document)
      } else if (!VALUE_KEYWORDS.has(keyword)) {
        stack.push({ node: child, base: here })
      }
    }
  }
  return found
}

/** Keywords whose values are instances, not schemas: a `$ref` key inside them is data. */
const VALUE_KEYWORDS: ReadonlySet<string> = new Set(['const', 'enum', 'default', 'examples'])

/** What a `$ref` names a document by: its `$id` (ajv drops a trailing `#`), else its file name. */
function keyOf (schema: AnySchemaObject, file: string): string {
  return typeof schema.$id === 'string' ? schema.$id.replace(/#$/, '') : file
}

/** The first of `types` by name, `type` aside: the type a `$ref` from `type` reaches when several claim its key. */
function firstOtherThan (type: string, types: Iterable<string>): string | undefined {
  let first: string | undefined
  for (const other of types) {
    if (other !== type && (first === undefined || other < first)) first = other
  }
  return first
}

// strictRequired off: a schema may require properties that an allOf/$ref branch defines
const OPTIONS = { strict: true, strictRequired: false, allErrors: true, allowUnionTypes: true } as const

/** A fresh ajv instance of `draft`, with formats and the `x-cloudevents-type` keyword. */
export function makeAjv (draft: Draft): Ajv {
  const ajv = draft === '2020-12' ? new Ajv2020(OPTIONS) : new Ajv(OPTIONS)
  addFormats.default(ajv)
  // date and date-time are checked on every event's data: the same RFC 3339 rules as
  // ajv-formats' full mode, on character codes, at a fraction of the cost (see rfc3339.ts)
  ajv.addFormat('date', { type: 'string', validate: isRfc3339Date })
  ajv.addFormat('date-time', { type: 'string', validate: isRfc3339 })
  ajv.addKeyword({ keyword: TYPE_KEYWORD, schemaType: 'string' })
  return ajv
}
