import { child, deepEqual, isAnnotation, isObject, joinUri, keywordRules, ownId, pointer } from './compatibility-rules.js'
import type { BreakingChange, CompatibilityLevel, Dialect, Engine, JsonSchema, Loc, ObjLoc, RefResolver, SchemaObject } from './compatibility-types.js'

/**
 * Rule-based compatibility of JSON Schema versions, with the levels of Confluent's Schema
 * Registry. The one promise: when `narrowings(a, b)` is empty, every instance `a` accepts is
 * accepted by `b`. Whatever the rules cannot prove counts as a breaking change.
 */

export { COMPATIBILITY_LEVELS } from './compatibility-types.js'
export type { BreakingChange, CompatibilityLevel, Dialect, Engine, JsonSchema, Loc, ObjLoc, RefResolver, SchemaObject } from './compatibility-types.js'

/**
 * Check `candidate` against the registered `history` (oldest first) under `level`:
 * BACKWARD: every instance valid under the latest version is valid under the candidate;
 * FORWARD: every instance valid under the candidate is valid under the latest;
 * FULL: both; the _TRANSITIVE variants check against every version of the history, not only the latest; NONE: no check.
 * An empty history is compatible. Each change's message says which direction it breaks and, for transitive checks, against which version ("version 2: ...").
 */
export function checkCompatibility (history: readonly JsonSchema[], candidate: JsonSchema, level: CompatibilityLevel, resolve: RefResolver): BreakingChange[] {
  if (level === 'NONE' || history.length === 0) return []
  const transitive = level.endsWith('_TRANSITIVE')
  const backward = !level.startsWith('FORWARD')
  const forward = !level.startsWith('BACKWARD')
  const out: BreakingChange[] = []
  history.forEach((old, i) => {
    if (!transitive && i < history.length - 1) return
    const version = transitive ? `version ${i + 1}: ` : ''
    if (backward) out.push(...label(narrowings(old, candidate, resolve), `${version}BACKWARD (old → new): `))
    if (forward) out.push(...label(narrowings(candidate, old, resolve), `${version}FORWARD (new → old): `))
  })
  // one line per change: a budget that ran out is said once, not once per branch it cut
  const seen = new Set<string>()
  return out.filter((change) => {
    const key = `${change.path}\n${change.message}`
    if (seen.has(key)) return false
    seen.add(key)
    return true
  })
}

function label (changes: readonly BreakingChange[], prefix: string): BreakingChange[] {
  return changes.map((c) => ({ path: c.path, message: prefix + c.message }))
}

/**
 * The changes by which `next` rejects instances that `prev` accepts ("narrowings").
 * BACKWARD problems of a new version = narrowings(old, new); FORWARD problems = narrowings(new, old).
 * `bases` are the retrieval URIs (or names) of schemas without an `$id`.
 */
export function narrowings (prev: JsonSchema, next: JsonSchema, resolve: RefResolver, bases: { prev?: string, next?: string } = {}): BreakingChange[] {
  const ctx: Ctx = { resolve, stack: new Map(), depth: 0, steps: 0, lastId: 0, ids: new WeakMap(), derived: new Map() }
  const seen = new Set<string>()
  return fits(ctx, [rootLoc(prev, bases.prev)], rootLoc(next, bases.next), false).filter((c) => {
    const key = `${c.path}\n${c.message}`
    return !seen.has(key) && seen.add(key) !== undefined
  })
}

function rootLoc (schema: JsonSchema, base: string | undefined): Loc {
  const id = ownId(schema)
  const declared = isObject(schema) && typeof schema.$schema === 'string' ? schema.$schema : ''
  const dialect: Dialect = /draft-0[4-7]/.test(declared) ? 'draft-07' : '2020-12' // the registry's default
  return { schema, base: id === undefined ? base : joinUri(base, id), root: schema, path: '', dialect }
}

/** Per-call state: no module-level caches, so concurrent checks never meet. */
interface Ctx {
  readonly resolve: RefResolver
  /** Pairs being compared, with the instance depth they started at: the coinductive cycle guard. */
  readonly stack: Map<string, number>
  /** How many levels into the instance the comparison has gone. */
  depth: number
  steps: number
  lastId: number
  readonly ids: WeakMap<object, number>
  /** Schema objects derived from others, kept so a derived object keeps one identity for the cycle guard. */
  readonly derived: Map<string, SchemaObject>
}

// past this many comparisons (anyOf against anyOf multiplies them) we give up, conservatively
const MAX_STEPS = 20_000
const TOO_COMPLEX: BreakingChange = { path: '', message: 'schemas too complex to compare: cannot tell whether the new one stays compatible' }

function idOf (ctx: Ctx, value: JsonSchema | undefined): string {
  if (!isObject(value)) return String(value)
  let id = ctx.ids.get(value)
  if (id === undefined) ctx.ids.set(value, id = ++ctx.lastId)
  return String(id)
}

function locKey (ctx: Ctx, loc: Loc): string {
  return `${idOf(ctx, loc.schema)}@${loc.base ?? ''}@${idOf(ctx, loc.root)}@${loc.dialect}`
}

function derive (ctx: Ctx, from: SchemaObject, tag: string, make: () => SchemaObject): SchemaObject {
  const key = `${idOf(ctx, from)}:${tag}`
  let made = ctx.derived.get(key)
  if (made === undefined) ctx.derived.set(key, made = make())
  return made
}

function without (ctx: Ctx, schema: SchemaObject, keywords: readonly string[]): SchemaObject {
  return derive(ctx, schema, `-${keywords.join()}`, () => Object.fromEntries(Object.entries(schema).filter(([k]) => !keywords.includes(k))))
}

/** A schema with no assertion keyword accepts every instance. */
const acceptsAll = (schema: JsonSchema): boolean => schema === true || (isObject(schema) && Object.keys(schema).every(isAnnotation))
const sameSchema = (p: Loc, n: Loc): boolean => sameValue(p, p.schema, n, n.schema)
const same = (p: ObjLoc, n: ObjLoc, keyword: string): boolean => sameValue(p, p.schema[keyword], n, n.schema[keyword])

function scan (value: unknown, hit: (key: string, v: unknown) => boolean): boolean {
  if (Array.isArray(value)) return value.some((v) => scan(v, hit))
  return isObject(value) && Object.entries(value).some(([k, v]) => hit(k, v) || scan(v, hit))
}

/**
 * Equal values whose `$ref`s also resolve alike: same bases and, for fragment-only refs, the
 * same resource; `$dynamicRef` depends on the dynamic scope, so it never counts as equal.
 */
function sameValue (p: Loc, pv: unknown, n: Loc, nv: unknown): boolean {
  if (!deepEqual(pv, nv) || p.dialect !== n.dialect) return false
  if (scan(nv, (k) => k === '$dynamicRef' || k === '$recursiveRef')) return false
  if (!scan(nv, (k) => k === '$ref')) return true
  const resourceRoots = p.root === pv && n.root === nv
  return p.base === n.base && (p.root === n.root || resourceRoots || !scan(nv, (k, v) => k === '$ref' && typeof v === 'string' && v.startsWith('#')))
}

/** The changes by which `next` rejects instances every one of `prevs` accepts. */
function fits (ctx: Ctx, prevs: readonly Loc[], next: Loc, descend: boolean): BreakingChange[] {
  if (prevs.some((p) => sameSchema(p, next))) return []
  if (descend) ctx.depth++
  try {
    const nexts = expand(ctx, next, 'next', new Set())
    const ps = prevs.flatMap((p) => expand(ctx, p, 'prev', new Set()).locs)
    return [...nexts.problems, ...nexts.locs.flatMap((n) => fitsOne(ctx, ps, n))]
  } finally {
    if (descend) ctx.depth--
  }
}

function fitsOne (ctx: Ctx, prevs: readonly Loc[], n: Loc): BreakingChange[] {
  const ps = prevs.filter((p) => !acceptsAll(p.schema))
  const first = ps[0]
  if (first === undefined) return compareOne(ctx, { ...n, schema: true, root: undefined }, n)
  if (ps.length === 1) return compareOne(ctx, first, n)
  const merged = merge(ctx, ps)
  if (merged !== undefined) return compareOne(ctx, merged, n)
  // the conjunction accepts less than each part: one part that fits is enough
  let best: BreakingChange[] | undefined
  for (const p of ps) {
    const found = compareOne(ctx, p, n)
    if (found.length === 0) return found
    if (best === undefined || found.length < best.length) best = found
  }
  return best ?? []
}

// keywords whose meaning depends on each other: a merge must not bring them together from two parts
const LINKED = [['properties', 'patternProperties', 'additionalProperties'], ['items', 'prefixItems', 'additionalItems'],
  ['contains', 'minContains', 'maxContains'], ['if', 'then', 'else'], ['type', 'nullable']]

/** One object for the conjunction `parts`, when they share a base and no keyword, so the rules see them together. */
function merge (ctx: Ctx, parts: readonly Loc[]): Loc | undefined {
  const [first] = parts
  if (first === undefined) return undefined
  const objects: SchemaObject[] = []
  for (const part of parts) {
    if (part.schema === false) return part
    if (!isObject(part.schema) || part.base !== first.base || part.root !== first.root || part.dialect !== first.dialect) return undefined
    objects.push(part.schema)
  }
  const keys = objects.flatMap((o) => Object.keys(o))
  if (new Set(keys).size !== keys.length) return undefined
  if (LINKED.some((group) => objects.filter((o) => group.some((k) => Object.hasOwn(o, k))).length > 1)) return undefined
  const schema = derive(ctx, objects[0] ?? {}, `+${objects.map((o) => idOf(ctx, o)).join()}`, () => objects.reduce<SchemaObject>((all, o) => ({ ...all, ...o }), {}))
  return { ...first, schema }
}

function compareOne (ctx: Ctx, p: Loc, n: Loc): BreakingChange[] {
  if (++ctx.steps > MAX_STEPS) return [TOO_COMPLEX]
  if (acceptsAll(n.schema) || p.schema === false || sameSchema(p, n)) return []
  const schema = n.schema
  if (!isObject(schema)) return [{ path: n.path, message: 'schema became false: it accepts nothing' }]
  const opaque = ['unevaluatedProperties', 'unevaluatedItems'].find((k) => n.dialect === '2020-12' && Object.hasOwn(schema, k))
  if (opaque !== undefined) return [{ path: pointer(n.path, opaque), message: `${opaque} next to $ref or a combinator changed: cannot tell whether the new schema still accepts everything the old one accepted` }]
  const key = `${locKey(ctx, p)}|${locKey(ctx, n)}`
  const started = ctx.stack.get(key)
  if (started !== undefined) {
    // met again deeper in the instance: assume it holds (finite instances make this sound)
    return started < ctx.depth ? [] : [{ path: n.path, message: '$ref cycle that never descends into the instance: cannot tell whether it stays compatible' }]
  }
  ctx.stack.set(key, ctx.depth)
  try {
    return compareObjects(ctx, { ...p, schema: isObject(p.schema) ? p.schema : {} }, { ...n, schema })
  } finally {
    ctx.stack.delete(key)
  }
}

function compareObjects (ctx: Ctx, p: ObjLoc, n: ObjLoc): BreakingChange[] {
  if (Array.isArray(p.schema.anyOf) && !same(p, n, 'anyOf')) return splitPrev(ctx, p, n, 'anyOf')
  // an old oneOf accepts no more than the anyOf of its branches; a new oneOf needs the old one as it is
  if (Array.isArray(p.schema.oneOf) && n.schema.oneOf === undefined) return splitPrev(ctx, p, n, 'oneOf')
  if (Array.isArray(n.schema.anyOf) && !same(p, n, 'anyOf')) return intoAnyOf(ctx, p, n)
  const engine: Engine = { fits: (prevs, next, descend) => fits(ctx, prevs, next, descend), sameValue }
  return keywordRules(p, n, engine)
}

/** Every branch of the old schema's anyOf (with the keywords beside it) must fit the new schema. */
function splitPrev (ctx: Ctx, p: ObjLoc, n: ObjLoc, keyword: string): BreakingChange[] {
  const rest: Loc = { ...p, schema: without(ctx, p.schema, [keyword]) }
  const branches = Array.isArray(p.schema[keyword]) ? p.schema[keyword] : []
  return branches.flatMap((branch, i) => {
    const found = fits(ctx, [rest, child(p, branch, keyword, i)], n, false)
    const which = `${keyword} branch ${i} of the old schema`
    if (found.length === 0 || !Array.isArray(n.schema.anyOf)) return found.map((c) => ({ path: c.path, message: `${which}: ${c.message}` }))
    return [{ path: pointer(p.path, keyword, i), message: `${which} fits no branch of the new anyOf` }]
  })
}

/** The old schema must fit the keywords beside the new anyOf, and one of its branches. */
function intoAnyOf (ctx: Ctx, p: ObjLoc, n: ObjLoc): BreakingChange[] {
  const out = fits(ctx, [p], { ...n, schema: without(ctx, n.schema, ['anyOf']) }, false)
  const branches = Array.isArray(n.schema.anyOf) ? n.schema.anyOf : []
  let closest: { i: number, found: BreakingChange[] } | undefined
  for (const [i, branch] of branches.entries()) {
    const found = fits(ctx, [p], child(n, branch, 'anyOf', i), false)
    if (found.length === 0) return out
    if (closest === undefined || found.length < closest.found.length) closest = { i, found }
  }
  const hint = closest?.found[0] === undefined ? '' : ` (closest, branch ${closest.i}: ${closest.found[0].message})`
  return [...out, { path: pointer(n.path, 'anyOf'), message: `anyOf: no branch accepts everything the old schema accepts${hint}` }]
}

interface Expanded { readonly locs: Loc[], readonly problems: BreakingChange[] }

/**
 * The conjuncts of a schema: `$ref` targets and `allOf` branches pulled out beside the
 * remaining keywords (ajv applies `$ref` together with its siblings, in draft-07 too).
 * On the old side an unresolvable `$ref` is dropped, which only widens what it accepts.
 */
function expand (ctx: Ctx, loc: Loc, side: 'prev' | 'next', seen: ReadonlySet<string>): Expanded {
  // an allOf/$ref diamond doubles the conjuncts per level: the same budget as the comparisons
  if (++ctx.steps > MAX_STEPS) return { locs: [], problems: [TOO_COMPLEX] }
  if (!isObject(loc.schema)) return { locs: [loc], problems: [] }
  const key = locKey(ctx, loc)
  if (seen.has(key)) {
    return { locs: [], problems: side === 'prev' ? [] : [{ path: loc.path, message: '$ref cycle that never descends into the instance: cannot tell whether it stays compatible' }] }
  }
  const inner = new Set(seen).add(key)
  const schema = unevaluated(ctx, loc.schema, side, loc.dialect)
  if (schema === undefined) return { locs: [loc], problems: [] }
  if (schema.$ref === undefined && !Array.isArray(schema.allOf)) return { locs: [{ ...loc, schema }], problems: [] }
  const locs: Loc[] = []
  const problems: BreakingChange[] = []
  const add = (sub: Expanded): void => { locs.push(...sub.locs); problems.push(...sub.problems) }
  if (typeof schema.$ref === 'string') {
    const target = resolveRef(ctx, loc, schema.$ref)
    if (target !== undefined) add(expand(ctx, target, side, inner))
    else if (side === 'next') problems.push({ path: pointer(loc.path, '$ref'), message: `$ref ${JSON.stringify(schema.$ref)} cannot be resolved` })
  }
  if (Array.isArray(schema.allOf)) schema.allOf.forEach((branch, i) => add(expand(ctx, child(loc, branch, 'allOf', i), side, inner)))
  const rest = without(ctx, schema, ['$ref', 'allOf'])
  if (!acceptsAll(rest) || locs.length === 0) locs.push({ ...loc, schema: rest })
  return { locs, problems }
}

const APPLICATORS = ['$ref', '$dynamicRef', '$recursiveRef', 'allOf', 'anyOf', 'oneOf', 'not', 'if', 'then', 'else', 'dependentSchemas', 'dependencies']

/**
 * unevaluatedProperties/Items without applicators beside them mean additionalProperties/items
 * (or nothing, when those are there). With applicators, the old side drops them (it only widens);
 * the new side stays as it is (undefined), and compareOne reports it unless equal.
 */
function unevaluated (ctx: Ctx, schema: SchemaObject, side: 'prev' | 'next', dialect: Dialect): SchemaObject | undefined {
  const { unevaluatedProperties: uP, unevaluatedItems: uI, ...rest } = schema
  if (dialect !== '2020-12' || (uP === undefined && uI === undefined)) return schema
  // additionalProperties and items evaluate everything left, which leaves nothing to the unevaluated ones
  const propsLeft = uP !== undefined && schema.additionalProperties === undefined
  const itemsLeft = uI !== undefined && schema.items === undefined
  const applied = APPLICATORS.some((k) => Object.hasOwn(schema, k))
  const itemsApplied = applied || Object.hasOwn(schema, 'contains') // ajv counts contains as evaluating items
  if (side === 'next' && ((propsLeft && applied) || (itemsLeft && itemsApplied))) return undefined
  return derive(ctx, schema, `unevaluated-${side}`, () => ({
    ...rest,
    ...(propsLeft && !applied ? { additionalProperties: uP } : {}),
    ...(itemsLeft && !itemsApplied ? { items: uI } : {})
  }))
}

function resolveRef (ctx: Ctx, loc: Loc, ref: string): Loc | undefined {
  // a fragment-only ref points into the resource at hand, not into whatever the resolver holds under its $id
  const found = ref.startsWith('#') && loc.root !== undefined
    ? resolveFragment(loc.root, loc.base, ref.slice(1))
    : ctx.resolve(ref, loc.base)
  if (found === undefined) return undefined
  const root = ownId(found.schema) !== undefined ? found.schema : ref.startsWith('#') && found.base === loc.base ? loc.root : undefined
  return { schema: found.schema, base: found.base, root, path: loc.path, dialect: loc.dialect }
}

interface Resolved { readonly schema: JsonSchema, readonly base: string | undefined }

/** Follow a URI fragment (a JSON Pointer or an anchor name) in `doc`, applying the `$id`s met on the way. */
function resolveFragment (doc: JsonSchema, base: string | undefined, fragment: string): Resolved | undefined {
  if (fragment === '') return { schema: doc, base }
  let text: string
  try {
    text = decodeURIComponent(fragment)
  } catch {
    return undefined // a malformed escape names nothing
  }
  if (!text.startsWith('/')) return findAnchor(doc, base, text)
  let node: unknown = doc
  let at = base
  for (const token of text.slice(1).split('/').map((t) => t.replaceAll('~1', '/').replaceAll('~0', '~'))) {
    if (Array.isArray(node) && /^\d+$/.test(token)) node = node[Number(token)]
    else if (isObject(node) && Object.hasOwn(node, token)) node = node[token]
    else return undefined
    const id = ownId(node)
    if (id !== undefined) at = joinUri(at, id)
  }
  return typeof node === 'boolean' || isObject(node) ? { schema: node, base: at } : undefined
}

function findAnchor (node: unknown, base: string | undefined, name: string): Resolved | undefined {
  if (Array.isArray(node)) return node.reduce<Resolved | undefined>((hit, x) => hit ?? findAnchor(x, base, name), undefined)
  if (!isObject(node)) return undefined
  const id = ownId(node)
  const at = id === undefined ? base : joinUri(base, id)
  if (node.$anchor === name || node.$dynamicAnchor === name || node.$id === `#${name}`) return { schema: node, base: at }
  return Object.values(node).reduce<Resolved | undefined>((hit, x) => hit ?? findAnchor(x, at, name), undefined)
}

/** A resolver over a set of documents keyed by their `$id` (or by a name when they have none), for tests and for the registry: resolves absolute and relative refs (relative against `base`), JSON Pointer fragments ("#/$defs/x", "defs.json#/$defs/x"), and `$id`s of embedded subschemas are not required. */
export function documentResolver (documents: ReadonlyMap<string, JsonSchema>): RefResolver {
  const byUri = new Map<string, { doc: JsonSchema, base: string }>()
  for (const [key, doc] of documents) {
    const id = ownId(doc)
    const base = stripFragment(id === undefined ? key : joinUri(undefined, id))
    byUri.set(stripFragment(key), { doc, base })
    byUri.set(base, { doc, base })
  }
  return function resolveDocumentRef (ref, base) {
    const uri = joinUri(base, ref)
    const hash = uri.indexOf('#')
    const found = byUri.get(hash < 0 ? uri : uri.slice(0, hash))
    return found === undefined ? undefined : resolveFragment(found.doc, found.base, hash < 0 ? '' : uri.slice(hash + 1))
  }
}

function stripFragment (uri: string): string {
  const hash = uri.indexOf('#')
  return hash < 0 ? uri : uri.slice(0, hash)
}
