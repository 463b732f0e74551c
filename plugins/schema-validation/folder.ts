/** Schema folders: reading their files, telling shared definitions from types, and a schema's draft. */
import { readdir, readFile } from 'node:fs/promises'
import { basename, join } from 'node:path'
import type { AnySchemaObject } from 'ajv'
import { SchemaFileError } from '../../src/core/index.js'

/** JSON Schema dialects the registry reads, by their `$schema` URI. */
const DRAFTS = {
  'https://json-schema.org/draft/2020-12/schema': '2020-12',
  'http://json-schema.org/draft-07/schema': 'draft-07'
} as const
export type Draft = (typeof DRAFTS)[keyof typeof DRAFTS]
export const DRAFT_BY_URI: ReadonlyMap<string, Draft> = new Map(Object.entries(DRAFTS))

/** The keyword naming the CloudEvent type a schema checks. */
export const TYPE_KEYWORD = 'x-cloudevents-type'

/** One file of a schema folder: its name and its parsed JSON. */
export interface SchemaDocument {
  readonly file: string
  readonly schema: AnySchemaObject
}

/** A type's file as read from a schema folder. */
export interface TypeFile {
  readonly type: string
  readonly file: string
  readonly schema: AnySchemaObject
}

/** Read every `*.json` file of `dir`; a broken file throws a `SchemaFileError` naming it. */
export async function readSchemaFolder (dir: string): Promise<SchemaDocument[]> {
  let names: string[]
  try {
    names = (await readdir(dir)).filter((name) => name.endsWith('.json')).sort()
  } catch (err: unknown) {
    throw new SchemaFileError(dir, 'cannot be read as a schema folder', { cause: err })
  }
  const documents: SchemaDocument[] = []
  for (const file of names) documents.push({ file, schema: await readSchema(join(dir, file)) })
  return documents
}

/**
 * Shared definitions (files starting with `_`) apart from the types' files; a type is
 * named by `x-cloudevents-type`, else by its file name. Two files of one type throw.
 */
export function splitDocuments (documents: readonly SchemaDocument[]): { definitions: SchemaDocument[], types: TypeFile[] } {
  const definitions: SchemaDocument[] = []
  const types: TypeFile[] = []
  const seen = new Map<string, string>()
  for (const { file, schema } of documents) {
    draftOf(schema, file)
    if (basename(file).startsWith('_')) {
      definitions.push({ file, schema })
      continue
    }
    const type = typeOf(schema, file)
    const earlier = seen.get(type)
    if (earlier !== undefined) throw new SchemaFileError(file, `checks type "${type}", which ${earlier} checks already`)
    seen.set(type, file)
    types.push({ type, file, schema })
  }
  return { definitions, types }
}

/** The CloudEvent type a schema checks: its `x-cloudevents-type`, else its file name without `.json`. */
export function typeOf (schema: AnySchemaObject, file: string): string {
  return typeof schema[TYPE_KEYWORD] === 'string' ? String(schema[TYPE_KEYWORD]) : basename(file).replace(/\.json$/, '')
}

export function draftOf (schema: AnySchemaObject, file: string): Draft {
  const declared = schema.$schema
  const draft = declared === undefined ? '2020-12' : DRAFT_BY_URI.get(String(declared).replace(/#$/, ''))
  if (draft === undefined) throw new SchemaFileError(file, `declares "$schema": ${JSON.stringify(declared)}; use draft 2020-12 or draft-07`)
  return draft
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

export function describe (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
