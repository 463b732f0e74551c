import assert from 'node:assert/strict'
import { test } from 'node:test'
import { parseTraceParent } from '@opentelemetry/core'
import { formatTraceparent, parseTraceparent, propagatedTraceContext, traceContextProblem, traceparentProblem, tracestateProblem } from '../../src/core/index.js'

// The examples of W3C Trace Context Level 1 and of its test suite (test/test.py)
const ID = '12345678901234567890123456789012'
const PARENT = '1234567890123456'

const VALID_TRACEPARENTS: readonly string[] = [
  '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
  '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00',
  `00-${ID}-${PARENT}-01`,
  `00-${ID}-${PARENT}-ff`,
  `cc-${ID}-${PARENT}-01`,
  `cc-${ID}-${PARENT}-01-what-the-future-will-be-like`
]

/** Each with the problem it is reported with. */
const INVALID_TRACEPARENTS: ReadonlyArray<readonly [string, string]> = [
  [`00-${ID}-${PARENT}-01.`, 'version 00 is 55 characters long, this is 56'],
  [`00-${ID}-${PARENT}-01-what-the-future-will-be-like`, 'version 00 is 55 characters long, this is 84'],
  [`cc-${ID}-${PARENT}-01.what-the-future-will-be-like`, 'trace-flags is not followed by "-"'],
  [`ff-${ID}-${PARENT}-01`, 'version ff is forbidden'],
  [`.0-${ID}-${PARENT}-01`, 'version is not 2 lowercase hex digits followed by "-"'],
  [`0.-${ID}-${PARENT}-01`, 'version is not 2 lowercase hex digits followed by "-"'],
  [`000-${ID}-${PARENT}-01`, 'version is not 2 lowercase hex digits followed by "-"'],
  [`0000-${ID}-${PARENT}-01`, 'version is not 2 lowercase hex digits followed by "-"'],
  [`0-${ID}-${PARENT}-01`, 'version is not 2 lowercase hex digits followed by "-"'],
  [`00-00000000000000000000000000000000-${PARENT}-01`, 'trace-id is all zeros'],
  [`00-.2345678901234567890123456789012-${PARENT}-01`, 'trace-id is not 32 lowercase hex digits'],
  [`00-1234567890123456789012345678901.-${PARENT}-01`, 'trace-id is not 32 lowercase hex digits'],
  [`00-123456789012345678901234567890123-${PARENT}-01`, 'version 00 is 55 characters long, this is 56'],
  [`00-1234567890123456789012345678901-${PARENT}-01`, 'version 00 is 55 characters long, this is 54'],
  [`00-${ID}-0000000000000000-01`, 'parent-id is all zeros'],
  [`00-${ID}-.234567890123456-01`, 'parent-id is not 16 lowercase hex digits'],
  [`00-${ID}-123456789012345.-01`, 'parent-id is not 16 lowercase hex digits'],
  [`00-${ID}-12345678901234567-01`, 'version 00 is 55 characters long, this is 56'],
  [`00-${ID}-123456789012345-01`, 'version 00 is 55 characters long, this is 54'],
  [`00-${ID}-${PARENT}-.0`, 'trace-flags is not 2 lowercase hex digits'],
  [`00-${ID}-${PARENT}-0.`, 'trace-flags is not 2 lowercase hex digits'],
  [`00-${ID}-${PARENT}-001`, 'version 00 is 55 characters long, this is 56'],
  [`00-${ID}-${PARENT}-1`, 'version 00 is 55 characters long, this is 54'],
  // lowercase hex only (HEXDIGLC)
  ['00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01', 'trace-id is not 32 lowercase hex digits'],
  // an attribute value is not an HTTP field: no optional whitespace around it
  [` 00-${ID}-${PARENT}-01`, 'version is not 2 lowercase hex digits followed by "-"'],
  [`00-${ID}-${PARENT}-01 `, 'version 00 is 55 characters long, this is 56'],
  [`cc-${ID}-${PARENT}-01-\u00e9`, 'the fields after trace-flags are not visible ASCII'],
  [`cc-${ID}-${PARENT}`, 'shorter than 55 characters'],
  ['', 'version is not 2 lowercase hex digits followed by "-"']
]

test('traceparent: the W3C examples and test suite\'s values, valid and invalid, each invalid one with its reason', () => {
  for (const value of VALID_TRACEPARENTS) assert.equal(traceparentProblem(value), undefined, value)
  for (const [value, problem] of INVALID_TRACEPARENTS) assert.equal(traceparentProblem(value), problem, value)
  assert.equal(traceparentProblem(42), 'not a string')
  assert.equal(traceparentProblem(null), 'not a string')
})

test('traceparent: agrees with OpenTelemetry\'s own parser on every example but the whitespace ones (an attribute is not a header) and a non-ASCII suffix', () => {
  const lenient = new Set([` 00-${ID}-${PARENT}-01`, `00-${ID}-${PARENT}-01 `, `cc-${ID}-${PARENT}-01-\u00e9`])
  for (const value of [...VALID_TRACEPARENTS, ...INVALID_TRACEPARENTS.map(([value]) => value)]) {
    const theirs = parseTraceParent(value)
    const ours = parseTraceparent(value)
    if (lenient.has(value)) {
      assert.ok(theirs !== null && ours === undefined, value)
      continue
    }
    assert.deepEqual(ours === undefined ? null : { traceId: ours.traceId, spanId: ours.parentId, traceFlags: ours.flags }, theirs, value)
  }
})

test('formatTraceparent writes version 00 with two-digit flags', () => {
  assert.equal(formatTraceparent(ID, PARENT, 1), `00-${ID}-${PARENT}-01`)
  assert.equal(formatTraceparent(ID, PARENT, 0), `00-${ID}-${PARENT}-00`)
  assert.equal(formatTraceparent(ID, PARENT, 0x1f), `00-${ID}-${PARENT}-1f`)
})

const KEY_CHARS = 'abcdefghijklmnopqrstuvwxyz0123456789_-*/'
const VALUE_CHARS = [[0x20, 0x2b], [0x2d, 0x3c], [0x3e, 0x7e]].flatMap(([from = 0, to = 0]) => Array.from({ length: to - from + 1 }, (_, i) => String.fromCharCode(from + i))).join('')
const members = (n: number): string => Array.from({ length: n }, (_, i) => `bar${String(i + 1).padStart(2, '0')}=${i + 1}`).join(',')

test('tracestate: the test suite\'s valid values (OWS, empty members, every allowed character, the length limits of keys)', () => {
  const valid = [
    'foo=1', 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE', '', 'foo=1,,bar=2', ' , ',
    'foo=1 \t , \t bar=2, \t baz=3', 'foo=1\t \t,\t \tbar=2,\t \tbaz=3', ' foo=1', '\tfoo=1', 'foo=1 ', 'foo=1\t', '\t foo=1 \t',
    `${KEY_CHARS}=${VALUE_CHARS}`, `${KEY_CHARS}@a-z0-9_-*/=${VALUE_CHARS}`,
    members(32), `${'z'.repeat(256)}=1`, `${'t'.repeat(241)}@${'v'.repeat(14)}=1`, `1tenant@vendor=1`, 'key= leading-space'
  ]
  for (const value of valid) assert.equal(tracestateProblem(value), undefined, value)
})

test('tracestate: the test suite\'s invalid values, each with its reason', () => {
  const invalid: ReadonlyArray<readonly [string, string]> = [
    ['foo=1,foo=1', 'list-member 2 repeats the key of an earlier one'],
    ['foo=1,foo=2', 'list-member 2 repeats the key of an earlier one'],
    ['foo =1', 'list-member 1 has a key outside the key grammar'],
    ['FOO=1', 'list-member 1 has a key outside the key grammar'],
    ['foo.bar=1', 'list-member 1 has a key outside the key grammar'],
    ['foo@=1,bar=2', 'list-member 1 has a key outside the key grammar'],
    ['@foo=1,bar=2', 'list-member 1 has a key outside the key grammar'],
    ['foo@@bar=1,bar=2', 'list-member 1 has a key outside the key grammar'],
    ['foo@bar@baz=1,bar=2', 'list-member 1 has a key outside the key grammar'],
    [members(33), 'more than 32 list-members (33)'],
    [`foo=1,${'z'.repeat(257)}=1`, 'list-member 2 has a key outside the key grammar'],
    [`foo=1,${'t'.repeat(242)}@v=1`, 'list-member 2 has a key outside the key grammar'],
    [`foo=1,t@${'v'.repeat(15)}=1`, 'list-member 2 has a key outside the key grammar'],
    ['foo=bar=baz', 'list-member 1 has a value outside the value grammar'],
    ['foo=,bar=3', 'list-member 1 has a value outside the value grammar'],
    [`foo=${'x'.repeat(257)}`, 'list-member 1 has a value outside the value grammar'],
    ['foo=a\tb', 'list-member 1 has a value outside the value grammar'],
    ['1foo=1', 'list-member 1 has a key outside the key grammar'],
    ['foo', 'list-member 1 is not key=value']
  ]
  for (const [value, problem] of invalid) assert.equal(tracestateProblem(value), problem, value)
  assert.equal(tracestateProblem(7), 'not a string')
})

test('an event\'s trace context: what the audit record says, and what goes on', () => {
  const traceparent = `00-${ID}-${PARENT}-01`
  assert.equal(traceContextProblem(undefined, undefined), undefined)
  assert.equal(traceContextProblem(traceparent, undefined), undefined)
  assert.equal(traceContextProblem(traceparent, 'rojo=1'), undefined)
  assert.equal(traceContextProblem(`00-${ID}-0000000000000000-01`, 'rojo=1'), 'malformed traceparent: parent-id is all zeros')
  assert.equal(traceContextProblem(`00-${ID}-0000000000000000-01`, 'not valid either'), 'malformed traceparent: parent-id is all zeros', 'tracestate is not read then')
  assert.equal(traceContextProblem(traceparent, 'a=1,a=2'), 'malformed tracestate: list-member 2 repeats the key of an earlier one')
  assert.equal(traceContextProblem(undefined, 'rojo=1'), 'tracestate without traceparent')
  assert.equal(traceContextProblem(true, undefined), 'malformed traceparent: not a string')

  assert.deepEqual(propagatedTraceContext(traceparent, ' rojo=1, congo=2 '), { traceparent, tracestate: 'rojo=1, congo=2' })
  assert.deepEqual(propagatedTraceContext(traceparent, 'a=1,a=2'), { traceparent }, 'a malformed tracestate is dropped')
  assert.deepEqual(propagatedTraceContext(traceparent, ' , '), { traceparent }, 'an empty one is not sent')
  assert.deepEqual(propagatedTraceContext(`cc-${ID}-${PARENT}-01-future`, undefined), { traceparent }, 'a later version goes on as version 00')
  assert.equal(propagatedTraceContext(`00-${ID}-${PARENT}-01 `, 'rojo=1'), undefined)
  assert.equal(propagatedTraceContext(undefined, 'rojo=1'), undefined)
})
