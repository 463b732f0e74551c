/**
 * The registry's JSON Schemas as `components/schemas` of an AsyncAPI document. A
 * registered schema names the documents it `$ref`s by URI (`defs.json#/$defs/date`,
 * resolved against its `$id`, or its file name without one); AsyncAPI tools resolve a
 * `$ref` as a JSON pointer into the document, or fetch it (a file beside the reader, a
 * URL). So each `$ref` is rewritten to the pointer of what it reached in the registry,
 * and each `$id` is dropped: left in, it would rebase the rewritten pointers for a JSON
 * Schema validator reading the document.
 */

/** A JSON Schema document of the registry: a type's latest version, or a shared definition. */
export interface RegistryDocument {
  readonly schema: object
  /** Its file name (a version registered through the API: `<type>.json`). */
  readonly file: string
  /** The type it checks; absent for a shared definition. */
  readonly type?: string
}

/** The bundled schemas: the pointer of each type's schema and the components to write. */
export interface BundledSchemas {
  /** `#/components/schemas/<name>` of each type's schema. */
  readonly refs: ReadonlyMap<string, string>
  readonly components: Readonly<Record<string, object>>
}

/** Where a document and each `$id` inside it sit: its component and the pointer within. */
interface Placed {
  readonly component: string
  readonly pointer: string
}

/** Keywords whose values are instances, not schemas: a `$ref` key inside them is data (as the registry's linker reads them). */
const VALUE_KEYWORDS: ReadonlySet<string> = new Set(['const', 'enum', 'default', 'examples'])
/** A base URI for schemas named by file, so that relative `$ref`s resolve between files as between URLs. */
const FILE_BASE = 'ce-broker-file:///'
/** What a components key may hold (AsyncAPI 3.0: `^[\w\d.\-_]+$`). */
const NOT_IN_KEY = /[^A-Za-z0-9._-]/g

/**
 * Each type's schema under its type (`albergue.v1.booking.reserved`), and the shared
 * definitions their `$ref`s reach under their file name (`_albergue.v1.defs`), every
 * `$ref` pointing into the document. A `$ref` to a document the registry does not hold
 * (it compiled every version, so none should) becomes `x-unresolved-ref`, never a fetch.
 */
export function bundleSchemas (types: readonly RegistryDocument[], definitions: readonly RegistryDocument[]): BundledSchemas {
  const taken = new Set<string>()
  const names = new Map<RegistryDocument, string>()
  for (const doc of [...types, ...definitions]) names.set(doc, uniqueKey(doc.type ?? doc.file.replace(/\.json$/, ''), taken))
  const resources = new Map<string, Placed>()
  const anchors = new Map<string, Placed>()
  // definitions first: a $ref to a key both claim reaches the definition, as in the registry's linker
  for (const doc of [...definitions, ...[...types].sort((a, b) => (a.type ?? '').localeCompare(b.type ?? ''))]) {
    index(doc, names.get(doc) ?? '', resources, anchors)
  }
  const components: Record<string, object> = {}
  const reached = new Set<string>()
  const refs = new Map<string, string>()
  for (const doc of types) {
    const name = names.get(doc) ?? ''
    components[name] = rewrite(doc, name, resources, anchors, reached)
    refs.set(doc.type ?? '', `#/components/schemas/${name}`)
  }
  // only the definitions some schema reaches, and what those reach in turn
  const pending = definitions.filter((doc) => reached.has(names.get(doc) ?? ''))
  const added = new Set<RegistryDocument>()
  for (let doc = pending.pop(); doc !== undefined; doc = pending.pop()) {
    if (added.has(doc)) continue
    added.add(doc)
    const name = names.get(doc) ?? ''
    components[name] = rewrite(doc, name, resources, anchors, reached)
    pending.push(...definitions.filter((other) => !added.has(other) && reached.has(names.get(other) ?? '')))
  }
  return { refs, components: sortedKeys(components) }
}

/** `name` made a components key, distinct from those `taken` (which it joins); never `__proto__`, which a plain object would take for its prototype. */
export function uniqueKey (name: string, taken: Set<string>): string {
  const base = name.replace(NOT_IN_KEY, '_') || '_'
  let key = base
  for (let n = 2; taken.has(key) || key === '__proto__'; n++) key = `${base}_${n}`
  taken.add(key)
  return key
}

/** The base URI of a document: its `$id`, else its file name, as the registry's linker keys it. */
function baseOf (doc: RegistryDocument): string {
  const id = Reflect.get(doc.schema, '$id')
  return typeof id === 'string' ? resolveUri(FILE_BASE, id.replace(/#$/, '')) : resolveUri(FILE_BASE, doc.file)
}

/** Note where `doc` and each nested `$id` and `$anchor` in it sit (the first document to claim a URI keeps it). */
function index (doc: RegistryDocument, component: string, resources: Map<string, Placed>, anchors: Map<string, Placed>): void {
  const root = baseOf(doc)
  if (!resources.has(root)) resources.set(root, { component, pointer: '' })
  walk(doc.schema, root, (node, base, pointer, isRoot) => {
    const id = Reflect.get(node, '$id')
    const here = !isRoot && typeof id === 'string' ? resolveUri(base, id.replace(/#$/, '')) : base
    if (here !== base && !resources.has(here)) resources.set(here, { component, pointer })
    const anchor = Reflect.get(node, '$anchor')
    if (typeof anchor === 'string' && !anchors.has(`${here}#${anchor}`)) anchors.set(`${here}#${anchor}`, { component, pointer })
    return here
  })
}

/** A copy of `doc`'s schema with every `$ref` a pointer into the document and no `$id`; notes the components its `$ref`s reach. */
function rewrite (doc: RegistryDocument, component: string, resources: ReadonlyMap<string, Placed>, anchors: ReadonlyMap<string, Placed>, reached: Set<string>): object {
  const copy = structuredClone(doc.schema)
  const root = baseOf(doc)
  walk(copy, root, (node, base, _pointer, isRoot) => {
    const id = Reflect.get(node, '$id')
    const here = !isRoot && typeof id === 'string' ? resolveUri(base, id.replace(/#$/, '')) : base
    Reflect.deleteProperty(node, '$id')
    // a nested resource's own dialect is its document's here: one `$schema`, at the root
    if (!isRoot) Reflect.deleteProperty(node, '$schema')
    const ref = Reflect.get(node, '$ref')
    if (typeof ref === 'string') {
      const target = locate(resolveUri(here, ref), resources, anchors, { root, component })
      Reflect.deleteProperty(node, '$ref')
      if (target === undefined) {
        Reflect.set(node, 'x-unresolved-ref', ref)
      } else {
        reached.add(target.component)
        Reflect.set(node, '$ref', `#/components/schemas/${target.component}${target.pointer}`)
      }
    }
    return here
  })
  return copy
}

/**
 * The component and pointer an absolute `$ref` names: a resource and a JSON pointer, or
 * an anchor. The referring document's own URI is itself, whichever other document claims it too.
 */
function locate (uri: string, resources: ReadonlyMap<string, Placed>, anchors: ReadonlyMap<string, Placed>, self: { readonly root: string, readonly component: string }): Placed | undefined {
  const cut = uri.indexOf('#')
  const document = cut === -1 ? uri : uri.slice(0, cut)
  const fragment = cut === -1 ? '' : uri.slice(cut + 1)
  if (fragment !== '' && !fragment.startsWith('/')) return anchors.get(`${document}#${fragment}`)
  const resource = document === self.root ? { component: self.component, pointer: '' } : resources.get(document)
  return resource === undefined ? undefined : { component: resource.component, pointer: resource.pointer + fragment }
}

/** `ref` resolved against `base` as URLs resolve; what cannot be resolved stays as given (and is then found nowhere). */
function resolveUri (base: string, ref: string): string {
  try {
    return new URL(ref, base).href
  } catch {
    return ref
  }
}

/**
 * Visit every schema object under `root` (not inside `const`, `enum`, `default`,
 * `examples`), parents first, with its base URI and its JSON pointer from `root`;
 * `visit` returns the base URI of the node's children. Iterative: a deep schema cannot
 * overflow the stack.
 */
function walk (root: object, base: string, visit: (node: object, base: string, pointer: string, isRoot: boolean) => string): void {
  const stack: Array<{ readonly node: unknown, readonly base: string, readonly pointer: string }> = [{ node: root, base, pointer: '' }]
  for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
    const { node, pointer } = item
    if (typeof node !== 'object' || node === null) continue
    if (Array.isArray(node)) {
      node.forEach((child: unknown, i) => { stack.push({ node: child, base: item.base, pointer: `${pointer}/${i}` }) })
      continue
    }
    const here = visit(node, item.base, pointer, node === root)
    for (const [keyword, child] of Object.entries(node)) {
      if (!VALUE_KEYWORDS.has(keyword)) stack.push({ node: child, base: here, pointer: `${pointer}/${pointerSegment(keyword)}` })
    }
  }
}

/** A property name as a segment of a JSON pointer inside a URI fragment (RFC 6901 §3 and §6). */
function pointerSegment (name: string): string {
  return name.replaceAll('~', '~0').replaceAll('/', '~1').replace(/[^A-Za-z0-9._~$!&'()*+,;=:@-]/gu, (c) => encodeURIComponent(c))
}

function sortedKeys<T> (record: Readonly<Record<string, T>>): Record<string, T> {
  return Object.fromEntries(Object.entries(record).sort(([a], [b]) => a.localeCompare(b)))
}
