import type { BreakingChange, Dialect, Engine, JsonSchema, Loc, ObjLoc, SchemaObject } from './compatibility-types.js'

// Keyword rules of the compatibility checker (the engine is compatibility.ts): for one pair of plain
// schema objects, the changes by which `n` rejects instances that `p` accepts. A rule that cannot
// prove a keyword of `n` holds for every instance of `p` reports it: a silent pass lets a breaking version in.

const ANNOTATIONS = new Set(['title', 'description', 'examples', 'default', '$comment', 'deprecated', 'readOnly', 'writeOnly', '$schema',
  '$id', '$defs', 'definitions', '$anchor', '$dynamicAnchor', '$recursiveAnchor', '$vocabulary', 'contentMediaType', 'contentEncoding', 'contentSchema'])

/** Keywords that never reject an instance (`x-*` included, such as `x-cloudevents-type`). */
export const isAnnotation = (keyword: string): boolean => ANNOTATIONS.has(keyword) || keyword.startsWith('x-')
export const isObject = (value: unknown): value is SchemaObject => typeof value === 'object' && value !== null && !Array.isArray(value)
export const pointer = (path: string, ...tokens: ReadonlyArray<string | number>): string =>
  path + tokens.map((t) => '/' + String(t).replaceAll('~', '~0').replaceAll('/', '~1')).join('')
/** `$id` that starts a new resource (draft-07's "#name" ids are anchors, not bases). */
export const ownId = (schema: unknown): string | undefined =>
  isObject(schema) && typeof schema.$id === 'string' && !schema.$id.startsWith('#') ? schema.$id : undefined

/** The equality ajv's enum and const use (fast-deep-equal on JSON values). */
export function deepEqual (a: unknown, b: unknown): boolean {
  if (a === b) return true
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((x, i) => deepEqual(x, b[i]))
  if (!isObject(a) || !isObject(b)) return false
  const keys = Object.keys(a)
  return keys.length === Object.keys(b).length && keys.every((k) => Object.hasOwn(b, k) && deepEqual(a[k], b[k]))
}

/** A subschema of `loc` under `tokens`; a value that is no schema becomes an unknown keyword, compared by equality. */
export function child (loc: Loc, value: unknown, ...tokens: ReadonlyArray<string | number>): Loc {
  const schema: JsonSchema = typeof value === 'boolean' || isObject(value) ? value : { invalid: value }
  const id = ownId(schema)
  const path = pointer(loc.path, ...tokens)
  return id === undefined ? { ...loc, schema, path } : { schema, base: joinUri(loc.base, id), root: schema, path, dialect: loc.dialect }
}

const RELATIVE = 'relative-base:/'
/** Resolve `ref` against `base`; a base that is no URI (a file name) resolves like a relative path. */
export function joinUri (base: string | undefined, ref: string): string {
  if (URL.canParse(ref)) return new URL(ref).href
  if (base === undefined) return ref
  if (URL.canParse(ref, base)) return new URL(ref, base).href
  const relative = URL.canParse(base, RELATIVE) ? new URL(base, RELATIVE) : undefined
  return relative !== undefined && URL.canParse(ref, relative.href) ? new URL(ref, relative).href.slice(RELATIVE.length) : ref
}

// equality that also asks the engine whether refs resolve alike
const same = (a: Args, keyword: string): boolean => a.engine.sameValue(a.p, a.p.schema[keyword], a.n, a.n.schema[keyword])

const fmt = (value: unknown): string => JSON.stringify(value)
const change = (path: string, message: string): BreakingChange => ({ path, message })
const CANNOT_TELL = 'cannot tell whether the new schema still accepts everything the old one accepted'
const cannotTell = ({ p, n }: Args, keyword: string): BreakingChange =>
  change(pointer(n.path, keyword), `${keyword} ${p.schema[keyword] === undefined ? 'added' : 'changed'}: ${CANNOT_TELL}`)
const named = (s: SchemaObject, keyword: string): SchemaObject => isObject(s[keyword]) ? s[keyword] : {}
const num = (value: unknown): number => typeof value === 'number' ? value : Number.NaN
const list = (value: unknown): readonly unknown[] => Array.isArray(value) ? value : []
// instance measures: NaN for a value of another kind, which no bound admits
const countKeys = (v: unknown): number => isObject(v) ? Object.keys(v).length : Number.NaN
const codePoints = (v: unknown): number => typeof v === 'string' ? [...v].length : Number.NaN // ajv counts code points, as its ucs2length does
const length = (v: unknown): number => Array.isArray(v) ? v.length : Number.NaN

type Kind = 'null' | 'boolean' | 'object' | 'array' | 'string' | 'number'
const TYPES = ['null', 'boolean', 'object', 'array', 'string', 'number', 'integer'] as const
const KIND_OF_TYPE: ReadonlyMap<string, Kind> = new Map(TYPES.map((t) => [t, t === 'integer' ? 'number' : t]))
const kindOf = (v: unknown): Kind => v === null ? 'null' : Array.isArray(v) ? 'array' : KIND_OF_TYPE.get(typeof v) ?? 'object'

function typeList (s: SchemaObject): readonly string[] | undefined {
  const types = typeof s.type === 'string' ? [s.type] : Array.isArray(s.type) ? s.type.filter((t): t is string => typeof t === 'string') : undefined
  return types !== undefined && s.nullable === true ? [...types, 'null'] : types // ajv's nullable adds null
}

/** The finite set of values `enum`/`const` allow, or undefined when neither is there. */
function valueList (s: SchemaObject): readonly unknown[] | undefined {
  const values = Array.isArray(s.enum) ? s.enum : undefined
  if (!Object.hasOwn(s, 'const')) return values
  return values === undefined ? [s.const] : values.filter((v) => deepEqual(v, s.const))
}

/** What is known of the old schema's instances: their kinds (keywords for other kinds never apply) and enum values. */
interface PrevFacts { readonly kinds: ReadonlySet<Kind>, readonly values: readonly unknown[] | undefined, readonly integers: boolean }

function prevFacts (p: ObjLoc): PrevFacts {
  const types = typeList(p.schema)
  const values = valueList(p.schema)
  if (values !== undefined) return { kinds: new Set(values.map(kindOf)), values, integers: values.every((v) => typeof v !== 'number' || Number.isInteger(v)) }
  const kinds = new Set((types ?? TYPES).flatMap((t) => KIND_OF_TYPE.get(t) ?? []))
  return { kinds, values, integers: types !== undefined && types.includes('integer') && !types.includes('number') }
}

interface Args { readonly p: ObjLoc, readonly n: ObjLoc, readonly keyword: string, readonly facts: PrevFacts, readonly engine: Engine }
/** Keywords checked together; `kinds`: the instance kinds they constrain (absent = all). */
interface Rule { readonly group: readonly string[], readonly kinds?: readonly Kind[], readonly check: (a: Args) => BreakingChange[] }

/** Old enum/const values of `kind` a check rejects, as changes; undefined when there are no values or the check cannot tell. */
function rejectedValues (a: Args, kind: Kind, accepts: (v: unknown) => boolean | undefined, what: string): BreakingChange[] | undefined {
  if (a.facts.values === undefined) return undefined
  const bad: BreakingChange[] = []
  for (const v of a.facts.values.filter((x) => kindOf(x) === kind)) {
    const ok = accepts(v)
    if (ok === undefined) return undefined
    if (!ok) bad.push(change(pointer(a.n.path, a.keyword), `${what} rejects the old value ${fmt(v)}`))
  }
  return bad
}

function checkType ({ p, n, facts }: Args): BreakingChange[] {
  const nTypes = typeList(n.schema)
  if (nTypes === undefined) return []
  const path = pointer(n.path, 'type')
  const matches = (v: unknown): boolean => nTypes.some((t) => t === 'integer' ? Number.isInteger(v) : kindOf(v) === t)
  if (facts.values !== undefined) return facts.values.filter((v) => !matches(v)).map((v) => change(path, `type ${fmt(nTypes)} rejects the old value ${fmt(v)}`))
  const pTypes = typeList(p.schema)
  const lost = (pTypes ?? TYPES).filter((t) => !nTypes.includes(t) && !(t === 'integer' && nTypes.includes('number')))
  if (lost.length === 0) return []
  return [change(path, pTypes === undefined ? `type added: ${fmt(nTypes)}` : `type narrowed from ${fmt(pTypes)} to ${fmt(nTypes)}`)]
}

function checkEnum ({ p, n, facts }: Args): BreakingChange[] {
  const keyword = n.schema.enum === undefined ? 'const' : 'enum'
  const path = pointer(n.path, keyword)
  if (facts.values === undefined) return [change(path, `${keyword} added: ${fmt(n.schema[keyword])}`)]
  const nValues = valueList(n.schema) ?? []
  const lost = facts.values.filter((v) => !nValues.some((w) => deepEqual(v, w)))
  if (keyword === 'const' && p.schema.const !== undefined && lost.length > 0) return [change(path, `const changed from ${fmt(p.schema.const)} to ${fmt(n.schema.const)}`)]
  return lost.map((v) => change(path, `${keyword} value ${fmt(v)} removed`))
}

interface Bound { readonly value: number, readonly exclusive: boolean, readonly keyword: string }
/**
 * One side of a bound: inclusive and exclusive keyword (counts have no exclusive one), `sign` +1 lower / -1 upper (bigger
 * is tighter), how an instance is measured, and a bound the old schema implies otherwise (required names for minProperties).
 */
interface BoundSpec { readonly keywords: readonly [string, string?], readonly kind: Kind, readonly sign: number, readonly measure: (v: unknown) => number, readonly implied?: (p: SchemaObject) => number | undefined }

/** The old schema's tightest bound on one side, signed. */
function tightest (a: Args, spec: BoundSpec): Bound | undefined {
  const found = spec.keywords.flatMap((keyword): Bound[] => {
    const raw = keyword === undefined ? undefined : a.p.schema[keyword]
    return typeof raw === 'number' && keyword !== undefined ? [{ value: spec.sign * raw, exclusive: keyword === spec.keywords[1], keyword }] : []
  })
  const extra = spec.implied?.(a.p.schema)
  if (extra !== undefined) found.push({ value: spec.sign * extra, exclusive: false, keyword: 'other keywords' })
  // an integer above 2 is at least 3: on integers (and counts) bounds round to stricter ones
  const integral = spec.kind !== 'number' || a.facts.integers
  return found.map((b) => integral ? { ...b, value: b.exclusive ? Math.floor(b.value) + 1 : Math.ceil(b.value), exclusive: false } : b)
    .reduce<Bound | undefined>((best, b) => best === undefined || b.value > best.value || (b.value === best.value && b.exclusive) ? b : best, undefined)
}

function boundRule (spec: BoundSpec): Rule {
  const group = spec.keywords.filter((k) => k !== undefined)
  return { group, kinds: [spec.kind], check: (a) => group.flatMap((keyword) => checkBound({ ...a, keyword }, spec)) }
}

const LOWER: BoundSpec = { keywords: ['minimum', 'exclusiveMinimum'], kind: 'number', sign: 1, measure: num }
const UPPER: BoundSpec = { keywords: ['maximum', 'exclusiveMaximum'], kind: 'number', sign: -1, measure: num }
const countRule = (keyword: string, kind: Kind, sign: number, measure: (v: unknown) => number, implied?: BoundSpec['implied']): Rule =>
  boundRule({ keywords: [keyword], kind, sign, measure, ...(implied === undefined ? {} : { implied }) })

function checkBound (a: Args, spec: BoundSpec): BreakingChange[] {
  const { p, n, keyword } = a
  const raw = n.schema[keyword]
  if (typeof raw === 'boolean' || spec.keywords.some((k) => k !== undefined && typeof p.schema[k] === 'boolean')) {
    // draft-04's boolean exclusive* changes what minimum/maximum mean: only equal pairs are safe
    return spec.keywords.every((k) => k === undefined || same(a, k)) ? [] : [cannotTell(a, keyword)]
  }
  if (typeof raw !== 'number') return raw === undefined ? [] : [cannotTell(a, keyword)]
  const want = { value: spec.sign * raw, exclusive: keyword === spec.keywords[1] }
  const within = (v: number): boolean => v > want.value || (v === want.value && !want.exclusive)
  const byValue = rejectedValues(a, spec.kind, (v) => within(spec.sign * spec.measure(v)), `${keyword} ${raw}`)
  if (byValue !== undefined) return byValue
  const have = tightest(a, spec)
  if (have !== undefined && (have.value > want.value || (have.value === want.value && (have.exclusive || !want.exclusive)))) return []
  const old = p.schema[keyword]
  const message = typeof old === 'number'
    ? `${keyword} ${spec.sign > 0 ? 'raised' : 'lowered'} from ${old} to ${raw}`
    : have === undefined ? `${keyword} added: ${raw}` : `${keyword} ${raw} added, stricter than what the old ${have.keyword} allowed`
  return [change(pointer(n.path, keyword), message)]
}

// the test ajv generates for multipleOf (without multipleOfPrecision)
const isMultiple = (v: number, m: number): boolean => m !== 0 && v / m === Number.parseInt(String(v / m), 10)

function checkMultipleOf (a: Args): BreakingChange[] {
  const m = a.n.schema.multipleOf
  if (typeof m !== 'number') return [cannotTell(a, 'multipleOf')]
  const byValue = rejectedValues(a, 'number', (v) => isMultiple(num(v), m), `multipleOf ${m}`)
  if (byValue !== undefined) return byValue
  const old = a.p.schema.multipleOf
  if (old === m) return []
  // ajv's test fails from x / m = 1e21 on (String turns to exponent form): a multiple of a multiple is one only below that
  const lo = tightest(a, LOWER)
  const hi = tightest(a, UPPER)
  const bounded = lo !== undefined && hi !== undefined && Math.max(Math.abs(lo.value), Math.abs(hi.value)) < 1e21 * m
  if (bounded && typeof old === 'number' && isMultiple(old, m) && (old / m) * m === old) return []
  if (bounded && a.facts.integers && Number.isInteger(Math.log2(1 / m)) && m <= 1) return [] // integers are exact multiples of 1/2^k in binary floating point
  const why = isMultiple(num(old), m) ? 'unbounded numbers reach where ajv tells multiples apart (1e21)' : `${String(old)} is not a multiple of ${m}`
  const message = typeof old === 'number' ? `multipleOf changed from ${old} to ${m}: ${why}` : `multipleOf added: ${m}`
  return [change(pointer(a.n.path, 'multipleOf'), message)]
}

/** The pattern as ajv compiles it (unicodeRegExp); undefined for an invalid one, which callers treat as one they cannot reason about. */
function regex (pattern: unknown): RegExp | undefined {
  try { return typeof pattern === 'string' ? new RegExp(pattern, 'u') : undefined } catch { return undefined }
}

/** pattern and format: the old schema must carry the very same string (old enum values are tested against a pattern). */
function sameText (a: Args): BreakingChange[] {
  const { p, n, keyword } = a
  const re = keyword === 'pattern' ? regex(n.schema.pattern) : undefined
  const byValue = re === undefined ? undefined : rejectedValues(a, 'string', (v) => re.test(String(v)), `pattern ${fmt(n.schema.pattern)}`)
  if (byValue !== undefined) return byValue
  const old = p.schema[keyword]
  const now = n.schema[keyword]
  if (typeof now === 'string' && old === now) return []
  return [change(pointer(n.path, keyword), typeof old === 'string' ? `${keyword} changed from ${fmt(old)} to ${fmt(now)}` : `${keyword} added: ${fmt(now)}`)]
}

/** Keywords this checker does not reason about: equal is fine, anything else breaks. */
const equalRule = (...group: string[]): Rule => ({ group, check: (a) => group.every((k) => same(a, k)) ? [] : [cannotTell(a, a.keyword)] })

/**
 * The schemas one property value must pass (as ajv: its `properties` entry and every matching
 * `patternProperties`, else `additionalProperties`); [] accepts anything, undefined = a bad regex.
 */
function propertySchemas (loc: ObjLoc, name: string): Loc[] | undefined {
  const locs: Loc[] = []
  const props = named(loc.schema, 'properties')
  if (Object.hasOwn(props, name)) locs.push(child(loc, props[name], 'properties', name))
  for (const [pattern, sub] of Object.entries(named(loc.schema, 'patternProperties'))) {
    const re = regex(pattern)
    if (re === undefined) return undefined
    if (re.test(name)) locs.push(child(loc, sub, 'patternProperties', pattern))
  }
  const ap = loc.schema.additionalProperties
  return locs.length === 0 && ap !== undefined ? [child(loc, ap, 'additionalProperties')] : locs
}

function checkProperties (a: Args): BreakingChange[] {
  const { p, n, engine } = a
  const pProps = named(p.schema, 'properties')
  const nProps = named(n.schema, 'properties')
  const out: BreakingChange[] = []
  for (const name of new Set([...Object.keys(pProps), ...Object.keys(nProps)])) {
    const prevs = propertySchemas(p, name) ?? [] // a bad regex in the old schema only widens what we take it to accept
    const nexts = propertySchemas(n, name)
    if (nexts === undefined) return [cannotTell(a, 'patternProperties')]
    const found = nexts.flatMap((next) => engine.fits(prevs, next, true))
    if (found.length === 0) continue
    if (Object.hasOwn(pProps, name) && !Object.hasOwn(nProps, name) && nexts.some((l) => l.schema === false)) {
      out.push(change(pointer(p.path, 'properties', name), `property ${fmt(name)} removed from a closed object`))
    } else if (!Object.hasOwn(pProps, name) && prevs.length === 0) {
      out.push(change(pointer(n.path, 'properties', name), `property ${fmt(name)} added to an open object: the old schema accepted any value under that name`))
    } else out.push(...found)
  }
  return [...out, ...otherProperties(a)]
}

/** Properties neither schema names: additionalProperties, when both have the same patternProperties. */
function otherProperties (a: Args): BreakingChange[] {
  const { p, n, engine } = a
  const ap = n.schema.additionalProperties
  if ((ap === undefined || ap === true) && countKeys(named(n.schema, 'patternProperties')) === 0) return []
  if (!same(a, 'patternProperties')) return [cannotTell(a, 'patternProperties')]
  if (ap === undefined) return []
  const prevs = p.schema.additionalProperties === undefined ? [] : [child(p, p.schema.additionalProperties, 'additionalProperties')]
  const found = engine.fits(prevs, child(n, ap, 'additionalProperties'), true)
  if (found.length === 0 || prevs.length > 0) return found
  const message = ap === false ? 'additionalProperties set to false: the old schema accepted other properties' : 'additionalProperties added: the old schema accepted any value under other names'
  return [change(pointer(n.path, 'additionalProperties'), message)]
}

function checkRequired ({ p, n }: Args): BreakingChange[] {
  const old = new Set(list(p.schema.required))
  return list(n.schema.required).filter((name) => !old.has(name)).map((name) => change(pointer(n.path, 'required'), `property ${fmt(name)} became required`))
}

// the old schema's keywords that may say the same as a dependency, where ajv reads them
const DEPENDENCY_KEYWORDS: Readonly<Record<Dialect, readonly string[]>> = { '2020-12': ['dependencies', 'dependentRequired', 'dependentSchemas'], 'draft-07': ['dependencies'] }

/** Each dependency must be one the old schema has too (property lists: implied by it), or be on a property it never has. */
function checkDependencies ({ p, n, keyword, engine }: Args): BreakingChange[] {
  const out: BreakingChange[] = []
  for (const [name, dep] of Object.entries(named(n.schema, keyword))) {
    if (propertySchemas(p, name)?.some((l) => l.schema === false) === true) continue
    const olds = DEPENDENCY_KEYWORDS[p.dialect].map((k) => named(p.schema, k)[name])
    const have = new Set([...list(p.schema.required), ...olds.flatMap(list)])
    const path = pointer(n.path, keyword, name)
    if (Array.isArray(dep)) out.push(...dep.filter((d) => !have.has(d)).map((d) => change(path, `${keyword}: property ${fmt(name)} now requires ${fmt(d)}`)))
    else if (!olds.some((old) => engine.sameValue(p, old, n, dep))) out.push(change(path, `${keyword} of property ${fmt(name)} changed: ${CANNOT_TELL}`))
  }
  return out
}

/** propertyNames, contains: the old schema must have one that fits the new one. */
function checkSubschema (a: Args): BreakingChange[] {
  const { p, n, keyword } = a
  const prevs = p.schema[keyword] === undefined ? [] : [child(p, p.schema[keyword], keyword)]
  const found = a.engine.fits(prevs, child(n, n.schema[keyword], keyword), true)
  return found.length === 0 || prevs.length > 0 ? found : [cannotTell(a, keyword)]
}

/** The least number of items `contains` asks for (draft-07 ajv knows no minContains). */
const minContains = (loc: ObjLoc): number => loc.dialect === '2020-12' && typeof loc.schema.minContains === 'number' ? loc.schema.minContains : 1

function checkContains (a: Args): BreakingChange[] {
  const { p, n } = a
  if (n.schema.contains === undefined) return [] // ajv ignores min/maxContains without contains
  if (n.dialect === '2020-12' && n.schema.maxContains === undefined && minContains(n) === 0) return []
  if (['contains', 'minContains', 'maxContains'].every((k) => same(a, k))) return []
  // at least as many old items matching a narrower schema: fine, unless the new schema also caps their number
  if (p.schema.contains === undefined || n.schema.maxContains !== undefined || minContains(p) < minContains(n)) return [cannotTell(a, 'contains')]
  return checkSubschema({ ...a, keyword: 'contains' })
}

/** Positional item schemas and the schema of the items after them (undefined = anything), per dialect. */
function arrayShape (loc: ObjLoc): { tuple: Loc[], rest: Loc | undefined, restKeyword: string } {
  const s = loc.schema
  if (Array.isArray(s.items)) {
    const rest = s.additionalItems === undefined ? undefined : child(loc, s.additionalItems, 'additionalItems')
    return { tuple: s.items.map((x, i) => child(loc, x, 'items', i)), rest, restKeyword: 'additionalItems' }
  }
  const prefix = loc.dialect === '2020-12' ? list(s.prefixItems) : []
  return { tuple: prefix.map((x, i) => child(loc, x, 'prefixItems', i)), rest: s.items === undefined ? undefined : child(loc, s.items, 'items'), restKeyword: 'items' }
}

function checkItems ({ p, n, engine }: Args): BreakingChange[] {
  const ps = arrayShape(p)
  const ns = arrayShape(n)
  const limit = typeof p.schema.maxItems === 'number' ? p.schema.maxItems : Infinity // positions the old schema never fills need no check
  const positions = Math.max(ps.tuple.length, ns.tuple.length)
  const out: BreakingChange[] = []
  for (let i = 0; i < Math.min(positions, limit); i++) {
    const prev = ps.tuple[i] ?? ps.rest
    const next = ns.tuple[i] ?? ns.rest
    const found = next === undefined ? [] : engine.fits(prev === undefined ? [] : [prev], next, true)
    if (found.length > 0 && prev === undefined) out.push(change(next?.path ?? n.path, `item ${i} constrained: the old schema accepted any item at that position`))
    else if (found.length > 0 && next?.schema === false) out.push(change(next.path, `arrays of more than ${i} items no longer accepted`))
    else out.push(...found)
  }
  if (ns.rest === undefined || positions >= limit) return out
  const found = engine.fits(ps.rest === undefined ? [] : [ps.rest], ns.rest, true)
  if (found.length === 0 || ps.rest !== undefined) return [...out, ...found]
  return [...out, change(ns.rest.path, `${ns.restKeyword} added: the old schema accepted any items${positions > 0 ? ` after position ${positions - 1}` : ''}`)]
}

function checkUniqueItems ({ p, n }: Args): BreakingChange[] {
  if (n.schema.uniqueItems !== true || p.schema.uniqueItems === true || (typeof p.schema.maxItems === 'number' && p.schema.maxItems <= 1)) return []
  return [change(pointer(n.path, 'uniqueItems'), `uniqueItems changed from ${fmt(p.schema.uniqueItems ?? false)} to true`)]
}

/** The rule of each keyword ajv knows in `dialect`; any other keyword falls to `equalRule`. */
function rulesOf (dialect: Dialect): ReadonlyMap<string, Rule> {
  const d2020 = dialect === '2020-12'
  const rules: Rule[] = [
    { group: ['type', 'nullable'], check: checkType },
    { group: ['enum', 'const'], check: checkEnum },
    boundRule(LOWER),
    boundRule(UPPER),
    { group: ['multipleOf'], kinds: ['number'], check: checkMultipleOf },
    countRule('minLength', 'string', 1, codePoints),
    countRule('maxLength', 'string', -1, codePoints),
    { group: ['pattern'], kinds: ['string'], check: sameText },
    { group: ['format'], kinds: ['string', 'number'], check: sameText },
    { group: ['properties', 'patternProperties', 'additionalProperties'], kinds: ['object'], check: checkProperties },
    { group: ['required'], kinds: ['object'], check: checkRequired },
    countRule('minProperties', 'object', 1, countKeys, (p) => new Set(list(p.required)).size),
    countRule('maxProperties', 'object', -1, countKeys, (p) => p.additionalProperties === false && p.patternProperties === undefined ? countKeys(named(p, 'properties')) : undefined),
    { group: ['propertyNames'], kinds: ['object'], check: checkSubschema },
    { group: ['dependencies'], kinds: ['object'], check: checkDependencies },
    { group: d2020 ? ['prefixItems', 'items'] : ['items', 'additionalItems'], kinds: ['array'], check: checkItems },
    countRule('minItems', 'array', 1, length),
    countRule('maxItems', 'array', -1, length),
    { group: ['uniqueItems'], kinds: ['array'], check: checkUniqueItems },
    { group: d2020 ? ['contains', 'minContains', 'maxContains'] : ['contains'], kinds: ['array'], check: checkContains },
    equalRule('if', 'then', 'else')
  ]
  if (d2020) rules.push(...['dependentRequired', 'dependentSchemas'].map((k): Rule => ({ group: [k], kinds: ['object'], check: checkDependencies })))
  return new Map(rules.flatMap((rule) => rule.group.map((k) => [k, rule] as const)))
}

const RULES: Readonly<Record<Dialect, ReadonlyMap<string, Rule>>> = { '2020-12': rulesOf('2020-12'), 'draft-07': rulesOf('draft-07') }

/**
 * The changes by which `n` rejects instances `p` accepts, keyword by keyword: every assertion
 * of `n` must follow from `p`. Both are plain objects; `$ref`, `allOf` and unequal `anyOf` are
 * the engine's. Keywords of `p` alone only make `p` narrower, so they never break anything.
 */
export function keywordRules (p: ObjLoc, n: ObjLoc, engine: Engine): BreakingChange[] {
  const facts = prevFacts(p)
  const done = new Set<string>()
  const out: BreakingChange[] = []
  for (const keyword of Object.keys(n.schema)) {
    if (isAnnotation(keyword) || done.has(keyword)) continue
    const rule = RULES[n.dialect].get(keyword) ?? equalRule(keyword)
    for (const k of rule.group) done.add(k)
    if (rule.kinds === undefined || rule.kinds.some((k) => facts.kinds.has(k))) out.push(...rule.check({ p, n, keyword, facts, engine }))
  }
  return out
}
