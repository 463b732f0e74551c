import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { test } from 'node:test'
import { parse } from 'yaml'
import { CesqlSyntaxError, compileCesql, type EventAttributes } from '../../plugins/webhooks/filters/cesql/index.js'

/** The CESQL conformance tests, copied from cloudevents/spec (see the folder's README). */
const TCK = new URL('../fixtures/cesql-tck/', import.meta.url)

interface TckCase {
  readonly name: string
  readonly expression: string
  readonly result?: unknown
  readonly error?: string
  readonly event?: Record<string, unknown>
  readonly eventOverrides?: Record<string, unknown>
}

/**
 * Cases whose expectation contradicts the specification they test, with what the
 * specification says instead. The test holds the engine to the specification there.
 */
const CONTRADICTS_SPEC: ReadonlyMap<string, { readonly result: unknown, readonly error: undefined, readonly why: string }> = new Map([
  ['Not operator / Invalid int cast', {
    result: false,
    error: undefined,
    why: 'NOT 10: CESQL 1.0 §3.7 made Integer → Boolean a cast every engine MUST support (10 is true), so NOT 10 is false without an error; ' +
      'the case still expects the draft\'s cast error. cloudevents/sdk-go\'s copy of the TCK expects false.'
  }]
])

/** "Any valid event" where a case gives none: the required attributes only, so that `missing` and `myext` are absent. */
const ANY_EVENT: EventAttributes = { specversion: '1.0', id: 'tck-event', source: 'https://example.com/tck', type: 'com.example.tck' }

/**
 * The suites as YAML reads them, and the expressions as written: YAML's core schema
 * would read `TRUE`, `0` or `-10` as a boolean or a number, so the expressions are read
 * again with the failsafe schema, where every scalar is a string.
 */
function suites (): Array<{ name: string, tests: TckCase[] }> {
  return readdirSync(TCK).filter((f) => f.endsWith('.yaml')).sort().map((file) => {
    const text = readFileSync(new URL(file, TCK), 'utf8')
    const typed = parse(text) as { name: string, tests: TckCase[] }
    const raw = parse(text, { schema: 'failsafe' }) as { tests: Array<{ expression: string }> }
    return { name: typed.name, tests: typed.tests.map((c, i) => ({ ...c, expression: raw.tests[i]?.expression ?? '' })) }
  })
}

const all = suites()

test('the TCK is all there: 18 suites, every case with an expression', () => {
  assert.equal(all.length, 18)
  assert.ok(all.every((s) => s.tests.length > 0 && s.tests.every((c) => c.expression !== '')))
})

for (const suite of all) {
  test(`CESQL TCK: ${suite.name}`, async (t) => {
    for (const tck of suite.tests) {
      const key = `${suite.name} / ${tck.name}`
      await t.test(`${tck.name}: ${tck.expression}`, () => {
        if (tck.error === 'parse') {
          assert.throws(() => compileCesql(tck.expression), CesqlSyntaxError)
          return
        }
        const expected = CONTRADICTS_SPEC.get(key) ?? { result: tck.result, error: tck.error }
        const event = { ...(tck.event ?? ANY_EVENT), ...tck.eventOverrides }
        const outcome = compileCesql(tck.expression).evaluate(event)
        assert.equal(outcome.error?.kind, expected.error, outcome.error?.message ?? 'no error')
        if (expected.result !== undefined) assert.deepEqual(outcome.value, expected.result)
      })
    }
  })
}

test('every case the spec contradicts exists in the TCK', () => {
  const names = new Set(all.flatMap((s) => s.tests.map((c) => `${s.name} / ${c.name}`)))
  for (const key of CONTRADICTS_SPEC.keys()) assert.ok(names.has(key), key)
})
