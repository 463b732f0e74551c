import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { Ajv2020 } from 'ajv/dist/2020.js'
import addFormats from 'ajv-formats'
import fc from 'fast-check'
import { COMPATIBILITY_LEVELS, checkCompatibility, documentResolver, narrowings, type BreakingChange, type JsonSchema, type RefResolver } from '../../plugins/schema-validation/compatibility.js'

type Schema = { [keyword: string]: unknown }

const DEFS_ID = 'https://albergue.example/schemas/v1/defs.json'
const isSchema = (v: unknown): v is Schema => typeof v === 'object' && v !== null && !Array.isArray(v)
/** A bundled schema file, as an object. */
function bundled (file: string): Schema {
  const parsed: unknown = JSON.parse(readFileSync(new URL(`../../schemas/${file}`, import.meta.url), 'utf8'))
  assert.ok(isSchema(parsed), `${file} holds a schema object`)
  return parsed
}
const resolve: RefResolver = documentResolver(new Map([[DEFS_ID, bundled('_albergue.v1.defs.json')]]))
const BASE = 'https://albergue.example/schemas/v1/albergue.v1.booking.reserved.json'
const DRAFT_07 = 'http://json-schema.org/draft-07/schema#'

/** An object schema in the albergue folder, so that "defs.json#/..." refs resolve as they do in the registry. */
const obj = (properties: Schema, extra: Schema = {}): Schema => ({ $id: BASE, type: 'object', properties, ...extra })
const closed = (properties: Schema, extra: Schema = {}): Schema => obj(properties, { additionalProperties: false, ...extra })

/** Where a direction must break: exactly one change, at `path`, whose message contains `says`. */
interface Expect { readonly path: string, readonly says: string }
/** A rule's pair of schemas; an absent `backward`/`forward` means that direction finds no change at all. */
interface Case { readonly rule: string, readonly old: JsonSchema, readonly next: JsonSchema, readonly backward?: Expect, readonly forward?: Expect }

const nights = (extra: Schema): Schema => obj({ nights: { type: 'integer', ...extra } })
const CASES: readonly Case[] = [
  { rule: 'type widened integer → number', old: obj({ n: { type: 'integer' } }), next: obj({ n: { type: 'number' } }), forward: { path: '/properties/n/type', says: 'type narrowed from ["number"] to ["integer"]' } },
  { rule: 'type added where there was none', old: obj({ n: {} }), next: obj({ n: { type: 'string' } }), backward: { path: '/properties/n/type', says: 'type added: ["string"]' } },
  { rule: 'type gains null', old: obj({ n: { type: 'string' } }), next: obj({ n: { type: ['string', 'null'] } }), forward: { path: '/properties/n/type', says: 'type narrowed from ["string","null"] to ["string"]' } },
  { rule: 'property became required', old: obj({ pilgrim_id: { type: 'string' } }), next: obj({ pilgrim_id: { type: 'string' } }, { required: ['pilgrim_id'] }), backward: { path: '/required', says: 'property "pilgrim_id" became required' } },
  { rule: 'property removed from a closed object', old: closed({ a: { type: 'string' }, notes: { type: 'string' } }), next: closed({ a: { type: 'string' } }), backward: { path: '/properties/notes', says: 'property "notes" removed from a closed object' } },
  { rule: 'property removed from an open object', old: obj({ a: { type: 'string' }, notes: { type: 'string' } }), next: obj({ a: { type: 'string' } }), forward: { path: '/properties/notes', says: 'property "notes" added to an open object' } },
  { rule: 'typed property added to an open object', old: obj({ a: { type: 'string' } }), next: obj({ a: { type: 'string' }, beds: { type: 'integer' } }), backward: { path: '/properties/beds', says: 'property "beds" added to an open object: the old schema accepted any value under that name' } },
  { rule: 'property accepting anything added to an open object', old: obj({ a: { type: 'string' } }), next: obj({ a: { type: 'string' }, beds: { description: 'any' } }) },
  { rule: 'property added to a closed object', old: closed({ a: { type: 'string' } }), next: closed({ a: { type: 'string' }, beds: { type: 'integer' } }), forward: { path: '/properties/beds', says: 'property "beds" removed from a closed object' } },
  { rule: 'property added, checked against the old additionalProperties', old: obj({}, { additionalProperties: { type: 'integer' } }), next: obj({ beds: { type: 'number' } }, { additionalProperties: { type: 'integer' } }), forward: { path: '/additionalProperties/type', says: 'type narrowed from ["number"] to ["integer"]' } },
  { rule: 'additionalProperties open → false', old: obj({ a: { type: 'string' } }), next: closed({ a: { type: 'string' } }), backward: { path: '/additionalProperties', says: 'additionalProperties set to false' } },
  { rule: 'additionalProperties open → schema', old: obj({}), next: obj({}, { additionalProperties: { type: 'string' } }), backward: { path: '/additionalProperties', says: 'additionalProperties added' } },
  { rule: 'additionalProperties schema widened', old: obj({}, { additionalProperties: { type: 'string' } }), next: obj({}, { additionalProperties: { type: ['string', 'number'] } }), forward: { path: '/additionalProperties/type', says: 'type narrowed' } },
  { rule: 'unevaluatedProperties: false closes like additionalProperties', old: obj({ a: { type: 'string' }, b: {} }, { unevaluatedProperties: false }), next: obj({ a: { type: 'string' } }, { unevaluatedProperties: false }), backward: { path: '/properties/b', says: 'removed from a closed object' } },
  { rule: 'patternProperties changed (conservative)', old: closed({}, { patternProperties: { '^x_': { type: 'string' } } }), next: closed({}, { patternProperties: { '^x_': { type: 'number' } } }), backward: { path: '/patternProperties', says: 'patternProperties changed: cannot tell' }, forward: { path: '/patternProperties', says: 'patternProperties changed: cannot tell' } },
  { rule: 'enum value removed', old: obj({ s: { $ref: 'defs.json#/$defs/bed_status' } }), next: obj({ s: { enum: ['free', 'reserved', 'occupied', 'cleaning'] } }), backward: { path: '/properties/s/enum', says: 'enum value "out_of_service" removed' } },
  { rule: 'enum added where there was none', old: obj({ s: { type: 'string' } }), next: obj({ s: { type: 'string', enum: ['free'] } }), backward: { path: '/properties/s/enum', says: 'enum added: ["free"]' } },
  { rule: 'const changed', old: obj({ v: { const: 1 } }), next: obj({ v: { const: 2 } }), backward: { path: '/properties/v/const', says: 'const changed from 1 to 2' }, forward: { path: '/properties/v/const', says: 'const changed from 2 to 1' } },
  { rule: 'minimum raised', old: nights({ minimum: 1 }), next: nights({ minimum: 2 }), backward: { path: '/properties/nights/minimum', says: 'minimum raised from 1 to 2' } },
  { rule: 'minimum added', old: nights({}), next: nights({ minimum: 1 }), backward: { path: '/properties/nights/minimum', says: 'minimum added: 1' } },
  { rule: 'exclusiveMinimum added', old: obj({ x: { type: 'number', minimum: 0 } }), next: obj({ x: { type: 'number', minimum: 0, exclusiveMinimum: 0 } }), backward: { path: '/properties/x/exclusiveMinimum', says: 'exclusiveMinimum 0 added' } },
  { rule: 'maximum lowered', old: nights({ maximum: 30 }), next: nights({ maximum: 14 }), backward: { path: '/properties/nights/maximum', says: 'maximum lowered from 30 to 14' } },
  { rule: 'integer maximum 9 ≡ exclusiveMaximum 10', old: nights({ maximum: 9 }), next: nights({ exclusiveMaximum: 10 }) },
  { rule: 'multipleOf to a multiple', old: obj({ x: { type: 'number', multipleOf: 0.01, minimum: 0, maximum: 1e6 } }), next: obj({ x: { type: 'number', multipleOf: 0.02, minimum: 0, maximum: 1e6 } }), backward: { path: '/properties/x/multipleOf', says: 'multipleOf changed from 0.01 to 0.02' } },
  // ajv finds 1.2e21 a multiple of 2 but not of 1 (x / 1 prints as "1.2e+21"): unbounded, no multipleOf follows from another
  { rule: 'multipleOf to a divisor, unbounded', old: obj({ x: { type: 'integer', multipleOf: 2 } }), next: obj({ x: { type: 'integer', multipleOf: 1 } }), backward: { path: '/properties/x/multipleOf', says: 'multipleOf changed from 2 to 1: unbounded' }, forward: { path: '/properties/x/multipleOf', says: '1 is not a multiple of 2' } },
  { rule: 'multipleOf to a non-multiple', old: nights({ multipleOf: 2 }), next: nights({ multipleOf: 3 }), backward: { path: '/properties/nights/multipleOf', says: '2 is not a multiple of 3' }, forward: { path: '/properties/nights/multipleOf', says: '3 is not a multiple of 2' } },
  { rule: 'minLength raised', old: obj({ s: { type: 'string', minLength: 1 } }), next: obj({ s: { type: 'string', minLength: 3 } }), backward: { path: '/properties/s/minLength', says: 'minLength raised from 1 to 3' } },
  { rule: 'maxLength lowered', old: obj({ s: { type: 'string', maxLength: 100 } }), next: obj({ s: { type: 'string', maxLength: 50 } }), backward: { path: '/properties/s/maxLength', says: 'maxLength lowered from 100 to 50' } },
  { rule: 'pattern added', old: obj({ s: { type: 'string' } }), next: obj({ s: { type: 'string', pattern: '^[A-Z]{3}$' } }), backward: { path: '/properties/s/pattern', says: 'pattern added: "^[A-Z]{3}$"' } },
  { rule: 'pattern changed', old: obj({ s: { type: 'string', pattern: '^[A-Z]{3}$' } }), next: obj({ s: { type: 'string', pattern: '^[A-Z]{2}$' } }), backward: { path: '/properties/s/pattern', says: 'pattern changed from' }, forward: { path: '/properties/s/pattern', says: 'pattern changed from' } },
  { rule: 'format added', old: obj({ d: { type: 'string' } }), next: obj({ d: { type: 'string', format: 'date' } }), backward: { path: '/properties/d/format', says: 'format added: "date"' } },
  { rule: 'items widened', old: obj({ l: { type: 'array', items: { type: 'integer' } } }), next: obj({ l: { type: 'array', items: { type: 'number' } } }), forward: { path: '/properties/l/items/type', says: 'type narrowed' } },
  { rule: 'prefixItems gains a position', old: obj({ l: { type: 'array', prefixItems: [{ type: 'string' }] } }), next: obj({ l: { type: 'array', prefixItems: [{ type: 'string' }, { type: 'integer' }] } }), backward: { path: '/properties/l/prefixItems/1', says: 'item 1 constrained' } },
  { rule: 'minItems raised', old: obj({ l: { type: 'array', minItems: 1 } }), next: obj({ l: { type: 'array', minItems: 2 } }), backward: { path: '/properties/l/minItems', says: 'minItems raised from 1 to 2' } },
  { rule: 'maxItems lowered', old: obj({ l: { type: 'array', maxItems: 5 } }), next: obj({ l: { type: 'array', maxItems: 4 } }), backward: { path: '/properties/l/maxItems', says: 'maxItems lowered from 5 to 4' } },
  { rule: 'uniqueItems false → true', old: obj({ l: { type: 'array', uniqueItems: false } }), next: obj({ l: { type: 'array', uniqueItems: true } }), backward: { path: '/properties/l/uniqueItems', says: 'uniqueItems changed from false to true' } },
  { rule: 'contains added', old: obj({ l: { type: 'array' } }), next: obj({ l: { type: 'array', contains: { const: 1 } } }), backward: { path: '/properties/l/contains', says: 'contains added' } },
  { rule: 'minProperties raised', old: obj({}, { minProperties: 1 }), next: obj({}, { minProperties: 2 }), backward: { path: '/minProperties', says: 'minProperties raised from 1 to 2' } },
  { rule: 'maxProperties lowered', old: obj({}, { maxProperties: 3 }), next: obj({}, { maxProperties: 2 }), backward: { path: '/maxProperties', says: 'maxProperties lowered from 3 to 2' } },
  { rule: 'propertyNames added', old: obj({}), next: obj({}, { propertyNames: { pattern: '^[a-z_]+$' } }), backward: { path: '/propertyNames', says: 'propertyNames added' } },
  { rule: 'dependentRequired extended', old: obj({}, { dependentRequired: { card: ['name'] } }), next: obj({}, { dependentRequired: { card: ['name', 'cvc'] } }), backward: { path: '/dependentRequired/card', says: 'property "card" now requires "cvc"' } },
  { rule: 'draft-07 dependencies added', old: { $schema: DRAFT_07, type: 'object' }, next: { $schema: DRAFT_07, type: 'object', dependencies: { card: ['cvc'] } }, backward: { path: '/dependencies/card', says: 'property "card" now requires "cvc"' } },
  { rule: 'anyOf branch added', old: obj({ v: { anyOf: [{ type: 'string' }, { type: 'null' }] } }), next: obj({ v: { anyOf: [{ type: 'string' }, { type: 'null' }, { type: 'integer' }] } }), forward: { path: '/properties/v/anyOf/2', says: 'anyOf branch 2 of the old schema fits no branch of the new anyOf' } },
  { rule: 'a plain schema becomes an anyOf branch', old: obj({ v: { type: 'string' } }), next: obj({ v: { anyOf: [{ type: 'string' }, { type: 'null' }] } }), forward: { path: '/properties/v/type', says: 'anyOf branch 1 of the old schema: type narrowed from ["null"] to ["string"]' } },
  { rule: 'anyOf into a plain schema', old: obj({ v: { anyOf: [{ type: 'string' }, { type: 'null' }] } }), next: obj({ v: { type: 'string' } }), backward: { path: '/properties/v/type', says: 'anyOf branch 1 of the old schema: type narrowed' } },
  { rule: 'oneOf changed (conservative)', old: obj({ v: { oneOf: [{ type: 'string' }, { type: 'integer' }] } }), next: obj({ v: { oneOf: [{ type: 'string' }, { type: 'number' }] } }), backward: { path: '/properties/v/oneOf', says: 'oneOf changed: cannot tell' }, forward: { path: '/properties/v/oneOf', says: 'oneOf changed: cannot tell' } },
  { rule: 'allOf gains a required property', old: obj({ a: {} }, { allOf: [{ required: ['a'] }] }), next: obj({ a: {} }, { allOf: [{ required: ['a'] }, { required: ['b'] }] }), backward: { path: '/allOf/1/required', says: 'property "b" became required' } },
  { rule: 'not added (conservative)', old: obj({}), next: obj({}, { not: { required: ['x'] } }), backward: { path: '/not', says: 'not added: cannot tell' } },
  { rule: 'if/then/else changed (conservative)', old: obj({}, { if: { required: ['a'] }, then: { required: ['b'] } }), next: obj({}, { if: { required: ['a'] }, then: { required: ['c'] } }), backward: { path: '/if', says: 'if changed: cannot tell' }, forward: { path: '/if', says: 'if changed: cannot tell' } },
  { rule: 'dependentSchemas changed (conservative)', old: obj({}, { dependentSchemas: { a: { required: ['b'] } } }), next: obj({}, { dependentSchemas: { a: { required: ['c'] } } }), backward: { path: '/dependentSchemas/a', says: 'cannot tell' }, forward: { path: '/dependentSchemas/a', says: 'cannot tell' } },
  { rule: 'an unknown keyword changed (conservative)', old: obj({}, { 'my-rule': 1 }), next: obj({}, { 'my-rule': 2 }), backward: { path: '/my-rule', says: 'my-rule changed: cannot tell' }, forward: { path: '/my-rule', says: 'my-rule changed: cannot tell' } },
  {
    rule: 'annotations changed',
    old: obj({ a: { type: 'string', title: 'A', description: 'x', examples: ['a'], default: 'a', deprecated: false, readOnly: true } }, { 'x-cloudevents-type': 'a.v1', $comment: 'c', $defs: { u: { type: 'string' } } }),
    next: obj({ a: { type: 'string', title: 'B', description: 'y', examples: ['b'], default: 'b', deprecated: true, writeOnly: true } }, { 'x-cloudevents-type': 'a.v2', $comment: 'd', definitions: {} })
  },
  { rule: 'true → false', old: obj({ a: true }), next: obj({ a: false }), backward: { path: '/properties/a', says: 'schema became false' } },
  { rule: '$ref to a shared definition ≡ its inlined copy', old: obj({ d: { $ref: 'defs.json#/$defs/date' } }), next: obj({ d: { type: 'string', format: 'date', description: 'a date' } }) },
  { rule: '$ref through a $ref chain ≡ inlined', old: obj({ p: { $ref: 'defs.json#/$defs/pilgrim_id' } }), next: obj({ p: { type: 'string', minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' } }) },
  { rule: '$ref target changed', old: obj({ d: { $ref: 'defs.json#/$defs/date' } }), next: obj({ d: { $ref: `${DEFS_ID}#/$defs/date_time` } }), backward: { path: '/properties/d/format', says: 'format changed from "date" to "date-time"' }, forward: { path: '/properties/d/format', says: 'format changed from "date-time" to "date"' } },
  { rule: '$ref beside a narrowing sibling', old: obj({ p: { $ref: 'defs.json#/$defs/id' } }), next: obj({ p: { $ref: 'defs.json#/$defs/id', maxLength: 32 } }), backward: { path: '/properties/p/maxLength', says: 'maxLength lowered from 64 to 32' } },
  { rule: 'unresolvable $ref', old: obj({ p: { type: 'string' } }), next: obj({ p: { $ref: 'missing.json' } }), backward: { path: '/properties/p/$ref', says: 'cannot be resolved' }, forward: { path: '/properties/p/type', says: 'type added' } },
  { rule: 'draft-07 tuple gets additionalItems: false', old: { $schema: DRAFT_07, type: 'array', items: [{ type: 'string' }, { type: 'integer' }] }, next: { $schema: DRAFT_07, type: 'array', items: [{ type: 'string' }, { type: 'integer' }], additionalItems: false }, backward: { path: '/additionalItems', says: 'additionalItems added' } },
  { rule: 'draft-07 tuple position narrowed', old: { $schema: DRAFT_07, type: 'array', items: [{ type: 'string' }, { type: 'number' }] }, next: { $schema: DRAFT_07, type: 'array', items: [{ type: 'string' }, { type: 'integer' }] }, backward: { path: '/items/1/type', says: 'type narrowed from ["number"] to ["integer"]' } },
  { rule: 'draft-07 tuple shortened and closed', old: { $schema: DRAFT_07, type: 'array', items: [{ type: 'string' }, { type: 'integer' }], additionalItems: false }, next: { $schema: DRAFT_07, type: 'array', items: [{ type: 'string' }], additionalItems: false }, backward: { path: '/additionalItems', says: 'arrays of more than 1 items no longer accepted' } }
]

function assertVerdict (changes: readonly BreakingChange[], expected: Expect | undefined, direction: string): void {
  if (expected === undefined) return assert.deepEqual(changes, [], `${direction} should be compatible`)
  assert.deepEqual(changes.map((c) => c.path), [expected.path], `${direction}: ${JSON.stringify(changes)}`)
  assert.ok(changes[0]?.message.includes(expected.says), `${direction}: "${changes[0]?.message ?? ''}" should say "${expected.says}"`)
}

for (const c of CASES) {
  test(`rule: ${c.rule}`, () => {
    assertVerdict(narrowings(c.old, c.next, resolve), c.backward, 'BACKWARD')
    assertVerdict(narrowings(c.next, c.old, resolve), c.forward, 'FORWARD')
  })
}

// ---- levels ----------------------------------------------------------------------------------

const stay = (extra: Schema): Schema => closed({ nights: { type: 'integer', ...extra } }, { required: ['nights'] })
/** Only version 1 conflicts with the candidate: a lower minimum (BACKWARD) and a maximum (FORWARD). */
const HISTORY = [stay({ minimum: 0, maximum: 10 }), stay({ minimum: 1 }), stay({ minimum: 1, description: 'nights booked' })]
const CANDIDATE = stay({ minimum: 1, title: 'stay' })

test('COMPATIBILITY_LEVELS lists the seven Confluent levels', () => {
  assert.deepEqual([...COMPATIBILITY_LEVELS].sort(), ['BACKWARD', 'BACKWARD_TRANSITIVE', 'FORWARD', 'FORWARD_TRANSITIVE', 'FULL', 'FULL_TRANSITIVE', 'NONE'])
})

test('the non-transitive levels check the latest version only', () => {
  for (const level of ['BACKWARD', 'FORWARD', 'FULL', 'NONE'] as const) assert.deepEqual(checkCompatibility(HISTORY, CANDIDATE, level, resolve), [], level)
})

test('the transitive levels name the version that conflicts', () => {
  const backward = { path: '/properties/nights/minimum', message: 'version 1: BACKWARD (old → new): minimum raised from 0 to 1' }
  const forward = { path: '/properties/nights/maximum', message: 'version 1: FORWARD (new → old): maximum added: 10' }
  assert.deepEqual(checkCompatibility(HISTORY, CANDIDATE, 'BACKWARD_TRANSITIVE', resolve), [backward])
  assert.deepEqual(checkCompatibility(HISTORY, CANDIDATE, 'FORWARD_TRANSITIVE', resolve), [forward])
  assert.deepEqual(checkCompatibility(HISTORY, CANDIDATE, 'FULL_TRANSITIVE', resolve), [backward, forward])
  assert.deepEqual(checkCompatibility(HISTORY, CANDIDATE, 'NONE', resolve), [])
})

test('BACKWARD, FORWARD and FULL against one version, and an empty history', () => {
  const widened = stay({ minimum: 0, maximum: 10, type: 'number' })
  const history = [HISTORY[0] ?? true]
  assert.deepEqual(checkCompatibility(history, widened, 'BACKWARD', resolve), [])
  const forward = checkCompatibility(history, widened, 'FORWARD', resolve)
  assert.deepEqual(forward, [{ path: '/properties/nights/type', message: 'FORWARD (new → old): type narrowed from ["number"] to ["integer"]' }])
  assert.deepEqual(checkCompatibility(history, widened, 'FULL', resolve), forward)
  for (const level of COMPATIBILITY_LEVELS) assert.deepEqual(checkCompatibility([], false, level, resolve), [], level)
})

// ---- $ref --------------------------------------------------------------------------------------

const tree = (value: Schema): Schema => ({
  $id: 'https://example.test/tree.json',
  type: 'object',
  properties: { value, children: { type: 'array', items: { $ref: '#' } }, first: { $ref: '#/$defs/node' } },
  $defs: { node: { $ref: '#' } }
})

test('a recursive tree schema terminates, and a change deep in it is found', () => {
  assert.deepEqual(narrowings(tree({ type: 'integer' }), tree({ type: 'number' }), resolve), [])
  assert.deepEqual(narrowings(tree({ type: 'number' }), tree({ type: 'integer' }), resolve),
    [{ path: '/properties/value/type', message: 'type narrowed from ["number"] to ["integer"]' }])
})

test('a $ref cycle that never descends into the instance is reported, not followed forever', () => {
  const loop = (title: string): Schema => ({ title, $ref: '#/$defs/a', $defs: { a: { $ref: '#/$defs/b' }, b: { $ref: '#/$defs/a' } } })
  const found = narrowings(loop('old'), loop('new'), resolve)
  assert.equal(found.length, 1)
  assert.match(found[0]?.message ?? '', /\$ref cycle that never descends/)
})

test('fragment refs stay inside their own document, even when two versions share an $id', () => {
  const version = (maxLength: number): Schema => ({ $id: BASE, type: 'object', properties: { p: { $ref: '#/$defs/p' } }, $defs: { p: { type: 'string', maxLength } } })
  const shared = documentResolver(new Map([[BASE, version(10)]])) // holds one of them under the shared $id
  assert.deepEqual(narrowings(version(10), version(20), shared), [])
  assert.deepEqual(narrowings(version(20), version(10), shared), [{ path: '/properties/p/maxLength', message: 'maxLength lowered from 20 to 10' }])
})

test('documentResolver: documents without $id by name, relative refs against a name, pointers with escapes', () => {
  const common: JsonSchema = { $defs: { 'a/b': { type: 'string' }, code: { $ref: '#/$defs/a~1b', maxLength: 3 } } }
  const resolver = documentResolver(new Map([['lib/common.json', common]]))
  assert.deepEqual(resolver('common.json#/$defs/a~1b', 'lib/event.json'), { schema: { type: 'string' }, base: 'lib/common.json' })
  assert.equal(resolver('other.json', 'lib/event.json'), undefined)
  assert.equal(resolver('common.json#/$defs/missing', 'lib/event.json'), undefined)
  const old: Schema = { type: 'object', properties: { c: { $ref: 'common.json#/$defs/code' } } }
  const next: Schema = { type: 'object', properties: { c: { type: 'string', maxLength: 2 } } }
  assert.deepEqual(narrowings(old, next, resolver, { prev: 'lib/v1.json', next: 'lib/v2.json' }), [{ path: '/properties/c/maxLength', message: 'maxLength lowered from 3 to 2' }])
})

test('the bundled booking.reserved schema is compatible with itself and with a new optional note', () => {
  const reserved = bundled('albergue.v1.booking.reserved.json')
  assert.deepEqual(narrowings(reserved, structuredClone(reserved), resolve), [])
  const properties = { ...(isSchema(reserved.properties) ? reserved.properties : {}), bed_id: { $ref: 'defs.json#/$defs/bed_id' } }
  const next = { ...reserved, properties }
  assert.deepEqual(checkCompatibility([reserved], next, 'BACKWARD', resolve), []) // the object is closed: a new property is fine
  assert.deepEqual(checkCompatibility([reserved], next, 'FORWARD', resolve).map((c) => c.path), ['/properties/bed_id'])
})

// ---- property tests: ajv is the oracle ----------------------------------------------------------
const NAMES = ['a', 'b', 'c', 'd'] as const
const PATTERNS = ['^[a-z]+$', '^[A-Z]', 'x'] as const
const FORMATS = ['date', 'email'] as const
const STRINGS = ['', 'a', 'abc', 'ABC', 'xyz', 'Hello', '2024-02-29', '2024-13-01', 'a@b.co', 'free', 'xxxxxxxxxxxx', 'é'] as const
const ENUM_VALUES = ['free', 'reserved', 'occupied', 1, 2, 2.5, null, true] as const
const TYPE_NAMES = ['string', 'integer', 'number', 'boolean', 'object', 'array', 'null'] as const
const num = (v: unknown, fallback: number): number => typeof v === 'number' ? v : fallback
const pickOf = <T>(xs: readonly [T, ...T[]], i: number): T => xs[i % xs.length] ?? xs[0]

const arbString: fc.Arbitrary<Schema> = fc.record({
  type: fc.constant('string'), minLength: fc.integer({ min: 0, max: 4 }), maxLength: fc.integer({ min: 1, max: 10 }),
  pattern: fc.constantFrom(...PATTERNS), format: fc.constantFrom(...FORMATS)
}, { requiredKeys: ['type'] })
const arbNumber = (type: 'integer' | 'number'): fc.Arbitrary<Schema> => fc.record({
  type: fc.constant(type), minimum: fc.integer({ min: -5, max: 5 }), maximum: fc.integer({ min: 0, max: 10 }),
  exclusiveMinimum: fc.integer({ min: -5, max: 5 }), exclusiveMaximum: fc.integer({ min: 0, max: 10 }),
  multipleOf: type === 'integer' ? fc.constantFrom(1, 2, 3) : fc.constantFrom(0.5, 0.25, 1, 2)
}, { requiredKeys: ['type'] })
const arbEnum: fc.Arbitrary<Schema> = fc.subarray([...ENUM_VALUES], { minLength: 1 }).map((values) => ({ enum: values }))
const arbLeaf: fc.Arbitrary<Schema> = fc.oneof(arbString, arbNumber('integer'), arbNumber('number'), fc.constant({ type: 'boolean' }), arbEnum)

/** A random schema of the small grammar: leaves, arrays, objects with a few properties, anyOf; `depth` levels of nesting. */
function arbSchema (depth: number): fc.Arbitrary<Schema> {
  if (depth === 0) return arbLeaf
  const sub = arbSchema(depth - 1)
  const array = fc.record({
    type: fc.constant('array'), items: sub, prefixItems: fc.array(sub, { minLength: 1, maxLength: 2 }),
    minItems: fc.integer({ min: 0, max: 2 }), maxItems: fc.integer({ min: 1, max: 4 }), uniqueItems: fc.boolean()
  }, { requiredKeys: ['type'] })
  const object = fc.record({
    type: fc.constant('object'),
    properties: fc.record(Object.fromEntries(NAMES.map((name) => [name, sub])), { requiredKeys: [] }),
    required: fc.subarray([...NAMES]),
    additionalProperties: fc.oneof(fc.constant(false), arbLeaf)
  }, { requiredKeys: ['type', 'properties'] })
  const anyOf = fc.tuple(sub, fc.oneof(fc.constant({ type: 'null' }), sub)).map((branches) => ({ anyOf: branches }))
  return fc.oneof({ arbitrary: arbLeaf, weight: 2 }, { arbitrary: array, weight: 1 }, { arbitrary: object, weight: 2 }, { arbitrary: anyOf, weight: 1 })
}

/** Every subschema of the grammar, for the edits to pick from. */
function subschemas (s: unknown, out: Schema[] = []): Schema[] {
  if (!isSchema(s)) return out
  out.push(s)
  for (const [k, v] of Object.entries(s)) {
    if (k === 'properties' && isSchema(v)) Object.values(v).forEach((x) => subschemas(x, out))
    else if (k === 'items' || k === 'additionalProperties') subschemas(v, out)
    else if ((k === 'anyOf' || k === 'prefixItems') && Array.isArray(v)) v.forEach((x) => subschemas(x, out))
  }
  return out
}

function replace (node: Schema, by: Schema): void {
  const copy = structuredClone(by) // `by` may live inside `node`
  for (const k of Object.keys(node)) delete node[k]
  Object.assign(node, copy)
}

type EditFn = (pick: number, fresh: Schema) => void
/** Raise or lower a number by 1 or 2 (or delete it), never below `floor`. */
const nudge = (node: Schema, key: string, floor: number): EditFn => (pick) => {
  if (pick % 5 === 4) delete node[key]
  else node[key] = Math.max(floor, num(node[key], 1) + (pick % 2 === 0 ? 1 : -1) * (1 + (pick >> 1) % 2))
}

/** The edits that make sense at `node`: each kind of change the rules know, in both directions. */
function editsAt (node: Schema): EditFn[] {
  const edits: EditFn[] = [(_pick, fresh) => replace(node, fresh), (pick) => { node.type = pickOf(TYPE_NAMES, pick) }, () => { delete node.type },
    (_pick, fresh) => replace(node, { anyOf: [{ ...node }, fresh] })]
  if (node.type === 'integer' || node.type === 'number') edits.push(() => { node.type = node.type === 'integer' ? 'number' : 'integer' })
  const anyOf = Array.isArray(node.anyOf) ? node.anyOf : undefined
  if (anyOf !== undefined) {
    edits.push((pick) => { const branch = anyOf[pick % anyOf.length]; replace(node, isSchema(branch) ? branch : {}) }, (_pick, fresh) => { anyOf.push(fresh) })
    if (anyOf.length > 1) edits.push((pick) => { anyOf.splice(pick % anyOf.length, 1) })
  }
  const values = Array.isArray(node.enum) ? node.enum : undefined
  if (values === undefined) edits.push((pick) => { node.enum = ENUM_VALUES.filter((_, i) => ((pick >> i) & 1) === 1 || i === pick % ENUM_VALUES.length) })
  else {
    edits.push(() => { delete node.enum }, (pick) => { const v = pickOf<unknown>(ENUM_VALUES, pick); if (!values.includes(v)) values.push(v) })
    if (values.length > 1) edits.push((pick) => { values.splice(pick % values.length, 1) })
  }
  if (node.type !== 'string' && node.type !== 'array' && node.type !== 'object') {
    for (const key of ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum']) edits.push(nudge(node, key, -Infinity))
    edits.push((pick) => { if (pick % 5 === 4) delete node.multipleOf; else node.multipleOf = pickOf([1, 2, 3, 0.5, 0.25], pick) })
  }
  if (node.type === 'string' || node.type === undefined) {
    edits.push(nudge(node, 'minLength', 0), nudge(node, 'maxLength', 0))
    edits.push((pick) => { if (pick % 4 === 3) delete node.pattern; else node.pattern = pickOf(PATTERNS, pick) })
    edits.push((pick) => { if (pick % 3 === 2) delete node.format; else node.format = pickOf(FORMATS, pick) })
  }
  if (node.type === 'array') {
    edits.push(nudge(node, 'minItems', 0), nudge(node, 'maxItems', 0), () => { node.uniqueItems = node.uniqueItems !== true })
    edits.push((_pick, fresh) => { node.items = fresh }, () => { delete node.items })
    edits.push((_pick, fresh) => { node.prefixItems = [...(Array.isArray(node.prefixItems) ? node.prefixItems : []), fresh] }, () => { delete node.prefixItems })
  }
  if (node.type === 'object' || node.properties !== undefined) edits.push(...objectEdits(node))
  return edits
}

function objectEdits (node: Schema): EditFn[] {
  const properties: Schema = isSchema(node.properties) ? node.properties : (node.properties = {})
  const required: unknown[] = Array.isArray(node.required) ? node.required : (node.required = [])
  return [
    (pick, fresh) => { properties[pickOf(NAMES, pick)] = fresh },
    (pick) => { delete properties[pickOf(NAMES, pick)] },
    (pick) => { const name = pickOf(NAMES, pick); if (!required.includes(name)) required.push(name) },
    (pick) => { required.splice(pick % Math.max(1, required.length), 1) },
    (pick, fresh) => { if (pick % 3 === 2) delete node.additionalProperties; else node.additionalProperties = pick % 3 === 0 ? false : fresh }
  ]
}

interface Edit { readonly at: number, readonly kind: number, readonly pick: number, readonly fresh: Schema }
const arbEdits: fc.Arbitrary<Edit[]> = fc.array(fc.record({ at: fc.nat(), kind: fc.nat(), pick: fc.nat(), fresh: arbSchema(1) }), { minLength: 1, maxLength: 3 })

function mutate (old: Schema, edits: readonly Edit[]): Schema {
  const next = structuredClone(old)
  for (const edit of edits) {
    const nodes = subschemas(next)
    const node = nodes[edit.at % nodes.length] ?? next
    const options = editsAt(node)
    options[edit.kind % options.length]?.(edit.pick, edit.fresh)
  }
  return next
}

/** Values biased towards being valid under `s` (near its bounds, from its enum, its pattern), mixed with random JSON. */
function arbValue (s: unknown, depth: number): fc.Arbitrary<unknown> {
  const options: Array<fc.Arbitrary<unknown>> = [fc.jsonValue({ maxDepth: 2 })]
  if (!isSchema(s)) return options[0] ?? fc.constant(null)
  if (Array.isArray(s.enum) && s.enum.length > 0) options.push(fc.constantFrom(...s.enum))
  if (Array.isArray(s.anyOf) && depth > 0) options.push(...s.anyOf.map((b) => arbValue(b, depth - 1)))
  const types = typeof s.type === 'string' ? [s.type] : TYPE_NAMES
  for (const type of types) options.push(arbTyped(s, type, depth))
  return fc.oneof(...options)
}

function arbTyped (s: Schema, type: string, depth: number): fc.Arbitrary<unknown> {
  const lo = Math.floor(num(s.minimum, num(s.exclusiveMinimum, -4))) - 1
  const hi = Math.max(lo, Math.ceil(num(s.maximum, num(s.exclusiveMaximum, 12))) + 1)
  const step = num(s.multipleOf, 1)
  // and numbers past 1e21, where ajv's multipleOf check stops telling integers apart
  const multiples = fc.oneof(fc.integer({ min: -4, max: 24 }).map((k) => k * step), fc.constantFrom(6e20 * step, 1.2e21, -2e21))
  if (type === 'integer') return fc.oneof(fc.integer({ min: lo, max: hi }), multiples)
  if (type === 'number') return fc.oneof(fc.integer({ min: lo, max: hi }), multiples, fc.double({ min: lo, max: hi, noNaN: true, noDefaultInfinity: true }))
  if (type === 'string') {
    const min = num(s.minLength, 0)
    const strings = [fc.constantFrom(...STRINGS), fc.string({ minLength: min, maxLength: Math.max(min, num(s.maxLength, min + 6)) })]
    if (typeof s.pattern === 'string') strings.push(fc.stringMatching(new RegExp(s.pattern, 'u')))
    return fc.oneof(...strings)
  }
  if (type === 'boolean') return fc.boolean()
  if (type === 'null' || depth === 0) return fc.constant(null)
  if (type === 'array') {
    const min = Math.min(num(s.minItems, 0), 4)
    const prefix = Array.isArray(s.prefixItems) ? s.prefixItems.map((x) => arbValue(x, depth - 1)) : []
    const rest = fc.array(arbValue(s.items ?? {}, depth - 1), { minLength: min, maxLength: Math.max(min, Math.min(num(s.maxItems, 3), 4)) })
    return fc.tuple(fc.tuple(...prefix), rest).map(([head, tail]) => [...head, ...tail])
  }
  const properties = isSchema(s.properties) ? s.properties : {}
  const required = Object.keys(properties).filter((k) => Array.isArray(s.required) && s.required.includes(k))
  const declared = fc.record(Object.fromEntries(Object.entries(properties).map(([k, v]) => [k, arbValue(v, depth - 1)])), { requiredKeys: required })
  // extra names, some of them declared by the other version of the schema: what open objects are about
  const extra = fc.dictionary(fc.constantFrom(...NAMES, 'z'), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 2 })
  return fc.tuple(declared, extra, fc.boolean()).map(([d, e, over]) => over ? { ...d, ...e } : { ...e, ...d })
}

const arbCase = arbSchema(2)
  .chain((old) => arbEdits.map((edits) => ({ old, next: mutate(old, edits) })))
  .chain(({ old, next }) => fc.record({
    old: fc.constant(old),
    next: fc.constant(next),
    instances: fc.array(fc.oneof(arbValue(old, 3), arbValue(next, 3)), { minLength: 10, maxLength: 25 })
  }))

test('property: when the checker finds no change, ajv accepts under the new schema whatever the old one accepted', (t) => {
  const ajv = new Ajv2020({ strict: false })
  addFormats.default(ajv)
  let [differing, compatible] = [0, 0]
  fc.assert(fc.property(arbCase, ({ old, next, instances }) => {
    const backward = checkCompatibility([old], next, 'BACKWARD', resolve)
    const forward = checkCompatibility([old], next, 'FORWARD', resolve)
    assert.equal(checkCompatibility([old], next, 'FULL', resolve).length, backward.length + forward.length)
    if (JSON.stringify(old) !== JSON.stringify(next)) {
      differing += 2
      compatible += (backward.length === 0 ? 1 : 0) + (forward.length === 0 ? 1 : 0)
    }
    const [validOld, validNext] = [ajv.compile(old), ajv.compile(next)]
    try {
      for (const x of instances) {
        if (backward.length === 0 && validOld(x)) assert.ok(validNext(x), `BACKWARD found compatible, but the new schema rejects ${JSON.stringify(x)}`)
        if (forward.length === 0 && validNext(x)) assert.ok(validOld(x), `FORWARD found compatible, but the old schema rejects ${JSON.stringify(x)}`)
      }
    } finally {
      ajv.removeSchema(old)
      ajv.removeSchema(next)
    }
  }), { numRuns: 400, seed: 20_260_501 })
  const share = compatible / differing
  t.diagnostic(`non-identical pairs found compatible: ${(100 * share).toFixed(1)} % of ${differing} verdicts (BACKWARD and FORWARD)`)
  assert.ok(share >= 0.2, `only ${(100 * share).toFixed(1)} % found compatible: the checker is too conservative`)
})
