import type { AnySchemaObject } from 'ajv'
import type { SchemaDocument } from './folder.js'

/** One field of an event's `data`, as the catalog lists it. */
export interface FieldSummary {
  /** Dotted path into `data`; `[]` marks the items of an array (`guests[].name`). */
  readonly path: string
  /** JSON type(s) (`string`, `integer | null`), `enum` with its values, or `any`. */
  readonly type: string
  readonly required: boolean
  readonly format?: string
  readonly description?: string
}

/** A registered schema with its fields, as the catalog shows it. */
export interface SchemaSummary {
  readonly type: string
  readonly file: string
  readonly id?: string
  readonly draft: string
  readonly title?: string
  /** The latest version, whose fields these are, and the type's settings. */
  readonly version: number
  readonly compatibility: string
  readonly mode: string
  /** Every version, oldest first. */
  readonly history: ReadonlyArray<{ readonly version: number, readonly registeredAt: string, readonly file?: string }>
  readonly fields: readonly FieldSummary[]
}

/** Deepest nesting of objects and arrays the summary follows. */
const MAX_DEPTH = 4

/**
 * The fields of a schema for people: each property with its type, whether it is
 * required, its format and description, following `$ref` (across the registry's
 * documents, by `$id`), `allOf`, nested objects and array items. What it cannot
 * follow (an unknown `$ref`, `oneOf` branches) is listed by the field's own name with
 * the type `any` or the branches' types joined.
 */
export function summarizeSchema (schema: AnySchemaObject, documents: readonly SchemaDocument[]): FieldSummary[] {
  const byId = new Map<string, AnySchemaObject>()
  for (const { schema: doc } of documents) if (typeof doc.$id === 'string') byId.set(doc.$id, doc)
  const fields: FieldSummary[] = []
  const base = typeof schema.$id === 'string' ? schema.$id : undefined
  collect({ node: schema, base, root: schema }, '', fields, 0, byId)
  return fields
}

/** A schema node with what its `$ref`s resolve against: its document's `$id` and root. */
interface Located {
  readonly node: AnySchemaObject
  readonly base: string | undefined
  readonly root: AnySchemaObject
}

function collect (at: Located, prefix: string, out: FieldSummary[], depth: number, byId: ReadonlyMap<string, AnySchemaObject>): void {
  if (depth > MAX_DEPTH) return
  const { properties, required } = merged(at, byId)
  for (const [name, raw] of properties) {
    const field = resolve(raw, byId)
    const path = prefix === '' ? name : `${prefix}.${name}`
    out.push({
      path,
      type: typeOf(field.node, byId, field),
      required: required.has(name),
      ...(typeof field.node.format === 'string' ? { format: field.node.format } : {}),
      ...describedBy(raw, byId)
    })
    const items = isObject(field.node.items) ? resolve({ ...field, node: field.node.items }, byId) : undefined
    if (items !== undefined) collect(items, `${path}[]`, out, depth + 1, byId)
    else collect(field, path, out, depth + 1, byId)
  }
}

/** Properties and required names of a node, its `$ref` and its `allOf` branches together. */
function merged (at: Located, byId: ReadonlyMap<string, AnySchemaObject>): { properties: Map<string, Located>, required: Set<string> } {
  const properties = new Map<string, Located>()
  const required = new Set<string>()
  const visit = (located: Located, hops: number): void => {
    if (hops > MAX_DEPTH) return
    const node = resolve(located, byId)
    if (isObject(node.node.properties)) {
      for (const [name, value] of Object.entries(node.node.properties)) {
        if (isObject(value) && !properties.has(name)) properties.set(name, { ...node, node: value })
      }
    }
    if (Array.isArray(node.node.required)) for (const name of node.node.required) if (typeof name === 'string') required.add(name)
    if (Array.isArray(node.node.allOf)) for (const branch of node.node.allOf) if (isObject(branch)) visit({ ...node, node: branch }, hops + 1)
  }
  visit(at, 0)
  return { properties, required }
}

/** Follow `$ref`s (a few hops at most) to the schema they name; the node itself when there is none or it is unknown. */
function resolve (at: Located, byId: ReadonlyMap<string, AnySchemaObject>): Located {
  let current = at
  for (let hop = 0; hop < 8 && typeof current.node.$ref === 'string'; hop++) {
    const target = lookup(current.node.$ref, current, byId)
    if (target === undefined) return current
    current = target
  }
  return current
}

function lookup (ref: string, from: Located, byId: ReadonlyMap<string, AnySchemaObject>): Located | undefined {
  let url: URL | undefined
  try {
    url = from.base === undefined ? undefined : new URL(ref, from.base)
  } catch {
    url = undefined
  }
  const hash = ref.startsWith('#') ? ref.slice(1) : (url?.hash.slice(1) ?? '')
  const docId = ref.startsWith('#') ? from.base : url === undefined ? undefined : url.href.slice(0, url.href.length - url.hash.length)
  const root = ref.startsWith('#') ? from.root : docId === undefined ? undefined : byId.get(docId)
  if (root === undefined) return undefined
  const node = pointer(root, decodeURIComponent(hash))
  return node === undefined ? undefined : { node, base: docId, root }
}

/** The node a JSON pointer (`/$defs/id`) names within `root`. */
function pointer (root: AnySchemaObject, path: string): AnySchemaObject | undefined {
  let node: unknown = root
  for (const token of path.split('/').slice(1)) {
    const key = token.replaceAll('~1', '/').replaceAll('~0', '~')
    if (!isObject(node)) return undefined
    node = node[key]
  }
  return isObject(node) ? node : undefined
}

function typeOf (node: AnySchemaObject, byId: ReadonlyMap<string, AnySchemaObject>, at: Located): string {
  if (Array.isArray(node.enum)) return `enum ${node.enum.map((value) => JSON.stringify(value)).join(' | ')}`
  if (node.const !== undefined) return `const ${JSON.stringify(node.const)}`
  if (typeof node.type === 'string') return node.type === 'array' ? `array${itemsType(node, byId, at)}` : node.type
  if (Array.isArray(node.type)) return node.type.join(' | ')
  const branches = Array.isArray(node.oneOf) ? node.oneOf : Array.isArray(node.anyOf) ? node.anyOf : undefined
  if (branches !== undefined) return branches.filter(isObject).map((branch) => typeOf(resolve({ ...at, node: branch }, byId).node, byId, at)).join(' | ')
  if (isObject(node.properties)) return 'object'
  return 'any'
}

function itemsType (node: AnySchemaObject, byId: ReadonlyMap<string, AnySchemaObject>, at: Located): string {
  if (!isObject(node.items)) return ''
  const items = resolve({ ...at, node: node.items }, byId)
  return ` of ${typeOf(items.node, byId, items)}`
}

/** The first description along a property's `$ref` chain: its own words before its target's. */
function describedBy (at: Located, byId: ReadonlyMap<string, AnySchemaObject>): { description?: string } {
  let current: Located | undefined = at
  for (let hop = 0; hop < 8 && current !== undefined; hop++) {
    if (typeof current.node.description === 'string') return { description: current.node.description }
    current = typeof current.node.$ref === 'string' ? lookup(current.node.$ref, current, byId) : undefined
  }
  return {}
}

function isObject (value: unknown): value is AnySchemaObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}
