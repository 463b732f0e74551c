import assert from 'node:assert/strict'
import { test } from 'node:test'
import { CesqlSyntaxError, compileCesql, type EventAttributes } from '../../plugins/webhooks/filters/cesql/index.js'

const EVENT: EventAttributes = {
  specversion: '1.0',
  id: 'e-1',
  source: '/albergue/booking-service',
  type: 'albergue.v1.booking.reserved',
  tenant: 'santiago',
  partitionkey: 7,
  priority: '010',
  ratio: 2.5,
  urgent: true,
  data: { nights: 3 }
}

/** The value of `expression` for `event`, failing the test on an evaluation error. */
function value (expression: string, event: EventAttributes = EVENT): unknown {
  const outcome = compileCesql(expression).evaluate(event)
  assert.equal(outcome.error, undefined, `${expression}: ${outcome.error?.message ?? ''}`)
  return outcome.value
}

/** The parse error of `expression`, as a message. */
function syntaxError (expression: string, maxDepth?: number): CesqlSyntaxError {
  try {
    compileCesql(expression, maxDepth === undefined ? {} : { maxDepth })
  } catch (err: unknown) {
    assert.ok(err instanceof CesqlSyntaxError, String(err))
    return err
  }
  assert.fail(`${expression} parsed`)
}

test('precedence: * / % before + -, before comparisons, before AND/OR/XOR; equal levels left to right', () => {
  const cases: Array<[string, unknown]> = [
    ['1 + 2 * 3', 7],
    ['(1 + 2) * 3', 9],
    ['10 - 4 - 3', 3],
    ['100 / 10 / 5', 2],
    ['7 % 4 * 2', 6],
    ['1 + 2 = 3', true],
    ['1 < 2 = TRUE', true],
    // AND, OR and XOR share one level (spec §3.6), unlike SQL: parentheses decide
    ['TRUE OR FALSE AND FALSE', false],
    ['TRUE OR (FALSE AND FALSE)', true],
    ['FALSE AND TRUE OR TRUE', true],
    ['TRUE XOR TRUE OR TRUE', true],
    // NOT and unary minus bind tighter than every binary operator
    ['NOT 1 = 2', false],
    ['NOT (1 = 2)', true],
    ['-2 * 3', -6],
    ['-(2 + 3)', -5],
    // LIKE and IN before the binary operators
    ["'a' LIKE 'a' = TRUE", true],
    ['2 IN (1, 2) AND 3 NOT IN (1, 2)', true],
    ["tenant LIKE 'san%' IN (TRUE)", true]
  ]
  for (const [expression, expected] of cases) assert.deepEqual(value(expression), expected, expression)
})

test('implicit casts: = takes the right operand\'s type, < > and arithmetic Integers, attributes of no CESQL type are Strings', () => {
  const cases: Array<[string, unknown]> = [
    ["'10' > 9", true],
    ["'010' = 10", true],
    ["10 = '010'", false],
    ['TRUE + 1', 2],
    ["partitionkey = '7'", true],
    ['partitionkey + 1', 8],
    ["priority = 10", true],
    ["priority = '10'", false],
    ["ratio = '2.5'", true],
    ['urgent', true],
    ["urgent = 'true'", true],
    ["urgent = 'TRUE'", false],
    ["STRING(partitionkey) LIKE '_'", true],
    ['EXISTS data', false],
    ['EXISTS SOURCE AND exists tenant', true],
    ["int('5') = 5 AND Concat_Ws(',', 'a', 'b') = 'a,b'", true]
  ]
  for (const [expression, expected] of cases) assert.deepEqual(value(expression), expected, expression)
})

test('LIKE: % and _ match any run and any one character, \\% and \\_ themselves, any other backslash itself', () => {
  const cases: Array<[string, boolean]> = [
    ["'100%' LIKE '100\\%'", true],
    ["'1000' LIKE '100\\%'", false],
    ["'a_c' LIKE 'a\\_c'", true],
    ["'abc' LIKE 'a\\_c'", false],
    ["'a\\b' LIKE 'a\\b'", true],
    ["'' LIKE '%'", true],
    ["'' LIKE '_'", false],
    ["'✓' LIKE '_'", true],
    ["'😀' LIKE '_'", true],
    ["'ab' LIKE '_'", false],
    ["'aXbXc' LIKE '%b%'", true],
    ["'abcabd' LIKE '%ab_'", true],
    ["'ABC' LIKE 'abc'", false],
    ["source LIKE '/albergue/%' AND type NOT LIKE '%.cancelled'", true]
  ]
  for (const [expression, expected] of cases) assert.equal(value(expression), expected, expression)
  // a pattern of many % against a long text is a loop over both, never a backtracking regular expression
  const text = 'a'.repeat(5000)
  assert.equal(value(`'${text}' LIKE '${'%a'.repeat(200)}%b'`), false)
  assert.equal(value(`'${text}' LIKE '${'%a'.repeat(200)}%'`), true)
})

test('string literals: a backslash before the quote or a doubled quote is the quote; characters are code points', () => {
  assert.equal(value("'it\\'s'"), "it's")
  assert.equal(value("'it''s'"), "it's")
  assert.equal(value('"say \\"hi\\""'), 'say "hi"')
  assert.equal(value("'a\\nb'"), 'a\\nb', 'no other escapes')
  assert.equal(value("LENGTH('✓é😀')"), 3)
  assert.equal(value("RIGHT('a😀', 1)"), '😀')
  assert.equal(value("TRIM('\u00a0\u2003x\u3000')"), 'x', 'Unicode White_Space is trimmed')
  assert.equal(value("LENGTH(TRIM('\ufeffx'))"), 2, 'a byte-order mark is not White_Space')
})

test('parse errors name what is wrong and where (1-based line:column)', () => {
  const cases: Array<[string, string]> = [
    ["type = 'a' AND AND tenant = 'x'", 'cesql: unexpected token "AND" at 1:16'],
    ["type = 'a'\n  AND (", 'cesql: unexpected end of expression at 2:8'],
    ["'abc", 'cesql: unterminated string literal at 1:1'],
    ['source @ 1', 'cesql: unexpected character "@" at 1:8'],
    ['tenant LIKE other', 'cesql: LIKE needs a string literal pattern, found "other" at 1:13'],
    ['tenant IN ()', 'cesql: unexpected token ")" at 1:12'],
    ['tenant IN 1', 'cesql: IN needs a parenthesised list, found "1" at 1:11'],
    ['EXISTS 1', 'cesql: EXISTS needs an attribute name, found "1" at 1:8'],
    ['first_name = 1', 'cesql: "first_name" is not an attribute name (letters and digits only) at 1:1'],
    ['2147483648 > 1', 'cesql: integer 2147483648 is outside the 32-bit range at 1:1'],
    ['LOWER(tenant', 'cesql: unexpected end of expression at 1:13'],
    ['(1 + 2', 'cesql: expected ")", found the end of the expression at 1:7'],
    ['1 2', 'cesql: unexpected token "2" at 1:3'],
    ['', 'cesql: unexpected end of expression at 1:1'],
    ['+tenant', 'cesql: unexpected token "+" at 1:1']
  ]
  for (const [expression, message] of cases) assert.equal(syntaxError(expression).message, message, expression)
  assert.deepEqual(syntaxError("type = 'a' AND AND x").position, { line: 1, column: 16 })
  assert.equal(value('-2147483648 < 0'), true, 'the smallest Integer is a literal')
})

test('evaluation errors: the value is the zero value of the type, the error says what and where', () => {
  const cases: Array<[string, unknown, string, string]> = [
    ["nights = 3", false, 'missingAttribute', 'the event has no attribute "nights" at 1:1'],
    ["INT('abc') > 1", false, 'cast', 'INT: cannot cast "abc" to Integer at 1:1'],
    ['1 + 5 / 0', 0, 'math', 'division by zero at 1:7'],
    ['2147483647 + 1', 0, 'math', '2147483647 + 1 is outside the 32-bit range at 1:12'],
    ['-ABS(-2147483648) > 0', false, 'math', 'ABS: the absolute value of -2147483648 is outside the 32-bit range at 1:2'],
    ["tenant > 1", false, 'cast', 'cannot cast "santiago" to Integer for > at 1:8'],
    ["LEFT('abc', -1)", 'abc', 'functionEvaluation', 'LEFT: count -1 is negative at 1:1'],
    ["FOO(tenant)", false, 'missingFunction', 'no function FOO takes 1 argument at 1:1'],
    ["partitionkey IN (7 + 1, 'x', 7)", false, 'cast', 'cannot cast "x" to Integer to compare it with 7 at 1:25']
  ]
  for (const [expression, expected, kind, message] of cases) {
    const outcome = compileCesql(expression).evaluate(EVENT)
    assert.deepEqual([outcome.value, outcome.error?.kind, outcome.error?.message], [expected, kind, message], expression)
  }
  // AND and OR do not evaluate what cannot change their value: no error there
  assert.deepEqual(compileCesql("FALSE AND INT('abc') = 1").evaluate(EVENT), { value: false })
  assert.deepEqual(compileCesql("tenant = 'santiago' OR nights > 1").evaluate(EVENT), { value: true })
})

test('hostile input: nesting is bounded before the parser descends, and long chains are loops, not recursion', () => {
  const deep = `${'('.repeat(100_000)}1${')'.repeat(100_000)}`
  const tooDeep = syntaxError(deep, 64)
  assert.equal(tooDeep.message, 'cesql: expression nests deeper than 64 levels at 1:65')
  assert.equal(tooDeep.limit, 'depth')
  assert.equal(syntaxError(`${'NOT '.repeat(50_000)}TRUE`, 32).limit, 'depth')
  assert.equal(syntaxError(`${'ABS('.repeat(10_000)}1${')'.repeat(10_000)}`, 32).limit, 'depth')
  assert.equal(value(`${'('.repeat(64)}1${')'.repeat(64)}`), 1, 'as deep as allowed')

  // 50,000 operands in one chain: parsed and evaluated without growing the stack
  assert.equal(value(`0${' + 1'.repeat(50_000)}`), 50_000)
  assert.equal(value(`${"tenant = 'x' OR ".repeat(20_000)}tenant = 'santiago'`), true)
  assert.equal(value(`tenant${" NOT LIKE 'x%'".repeat(20_000)}`), true, 'postfix operators apply in turn')
})
