import type { EvaluationErrorKind } from './errors.js'
import { INT_MAX, INT_MIN, show, toBoolean, toInteger, toText, type CesqlType, type CesqlValue } from './values.js'

/** A parameter's type; `Any` takes every value as it is (the casting functions). */
export type ParamType = CesqlType | 'Any'

/** Reports an error a function raises while it still returns a value (§3.5.3). */
export type Fail = (kind: EvaluationErrorKind, message: string) => void

/** A built-in function (§3.5): its arguments arrive cast to `params` (then `rest`) types. */
export interface FunctionDef {
  /** Upper case; calls are case-insensitive. */
  readonly name: string
  readonly params: readonly ParamType[]
  /** The type of every argument after `params`, for a variadic function. */
  readonly rest?: CesqlType
  readonly returns: CesqlType
  readonly apply: (args: readonly CesqlValue[], fail: Fail) => CesqlValue
}

/** The arguments' types are checked by the evaluator's casts before `apply` runs: these only read them. */
function str (args: readonly CesqlValue[], i: number): string {
  const value = args[i]
  return typeof value === 'string' ? value : ''
}

function int (args: readonly CesqlValue[], i: number): number {
  const value = args[i]
  return typeof value === 'number' ? value : 0
}

/** Characters are code points: `LENGTH('✓')` is 1. */
function chars (value: string): string[] {
  return Array.from(value)
}

/** One Unicode White_Space character (every one is in the BMP: one UTF-16 unit), which is not quite what `String.prototype.trim` removes. */
const SPACE = /^\p{White_Space}$/u

/** `text` without its leading and trailing White_Space, in one pass from each end (a regular expression alternation took quadratic time on a long run of spaces). */
function trimSpace (text: string): string {
  let start = 0
  let end = text.length
  while (start < end && SPACE.test(text.charAt(start))) start++
  while (end > start && SPACE.test(text.charAt(end - 1))) end--
  return text.slice(start, end)
}

/** The longest string a function may build (UTF-16 units): about 64 times the largest payload, far below what V8 can hold. */
export const MAX_BUILT = 16_777_216

/** `parts` joined by `separator`, or '' with an error when the result would be longer than `MAX_BUILT`. */
function joined (parts: readonly string[], separator: string, fail: Fail): string {
  let length = separator.length * Math.max(0, parts.length - 1)
  for (const part of parts) length += part.length
  if (length > MAX_BUILT) {
    fail('functionEvaluation', `the result would be ${length} characters long, more than ${MAX_BUILT}`)
    return ''
  }
  return parts.join(separator)
}

/** `SUBSTRING(x, pos[, len])`: 1-based; a negative `pos` counts from the end; `pos` 0 is the empty string. */
function substring (args: readonly CesqlValue[], fail: Fail): string {
  const text = chars(str(args, 0))
  const pos = int(args, 1)
  const len = args.length > 2 ? int(args, 2) : undefined
  if (pos > text.length || pos < -text.length) {
    fail('functionEvaluation', `position ${pos} is outside a string of ${text.length} characters`)
    return ''
  }
  if (len !== undefined && len < 0) {
    fail('functionEvaluation', `length ${len} is negative`)
    return ''
  }
  if (pos === 0) return ''
  const start = pos > 0 ? pos - 1 : text.length + pos
  return text.slice(start, len === undefined ? undefined : start + len).join('')
}

/** `LEFT` and `RIGHT`: a negative count returns `x` with an error. */
function side (from: 'left' | 'right') {
  return function take (args: readonly CesqlValue[], fail: Fail): string {
    const text = str(args, 0)
    const count = int(args, 1)
    if (count < 0) {
      fail('functionEvaluation', `count ${count} is negative`)
      return text
    }
    const all = chars(text)
    if (count >= all.length) return text
    return (from === 'left' ? all.slice(0, count) : all.slice(all.length - count)).join('')
  }
}

/**
 * The functions every engine must have (§3.5.1, §3.5.2), and the casting functions
 * `INT`, `BOOL` and `STRING` that the conformance tests call (the explicit form of
 * §3.7's casts; a failed cast returns the zero value with a cast error).
 */
const BUILT_INS: readonly FunctionDef[] = [
  { name: 'LENGTH', params: ['String'], returns: 'Integer', apply: (args) => chars(str(args, 0)).length },
  { name: 'CONCAT', params: [], rest: 'String', returns: 'String', apply: (args, fail) => joined(args.map(toText), '', fail) },
  { name: 'CONCAT_WS', params: ['String'], rest: 'String', returns: 'String', apply: (args, fail) => joined(args.slice(1).map(toText), str(args, 0), fail) },
  { name: 'LOWER', params: ['String'], returns: 'String', apply: (args) => str(args, 0).toLowerCase() },
  { name: 'UPPER', params: ['String'], returns: 'String', apply: (args) => str(args, 0).toUpperCase() },
  { name: 'TRIM', params: ['String'], returns: 'String', apply: (args) => trimSpace(str(args, 0)) },
  { name: 'LEFT', params: ['String', 'Integer'], returns: 'String', apply: side('left') },
  { name: 'RIGHT', params: ['String', 'Integer'], returns: 'String', apply: side('right') },
  { name: 'SUBSTRING', params: ['String', 'Integer'], returns: 'String', apply: substring },
  { name: 'SUBSTRING', params: ['String', 'Integer', 'Integer'], returns: 'String', apply: substring },
  {
    name: 'ABS',
    params: ['Integer'],
    returns: 'Integer',
    apply: (args, fail) => {
      const n = int(args, 0)
      if (n !== INT_MIN) return Math.abs(n)
      fail('math', `the absolute value of ${INT_MIN} is outside the 32-bit range`)
      return INT_MAX
    }
  },
  {
    name: 'INT',
    params: ['Any'],
    returns: 'Integer',
    apply: ([value = 0], fail) => {
      const n = toInteger(value)
      if (n === undefined) fail('cast', `cannot cast ${show(value)} to Integer`)
      return n ?? 0
    }
  },
  {
    name: 'BOOL',
    params: ['Any'],
    returns: 'Boolean',
    apply: ([value = false], fail) => {
      const b = toBoolean(value)
      if (b === undefined) fail('cast', `cannot cast ${show(value)} to Boolean`)
      return b ?? false
    }
  },
  { name: 'STRING', params: ['Any'], returns: 'String', apply: ([value = '']) => toText(value) }
]

const BY_NAME: ReadonlyMap<string, readonly FunctionDef[]> = new Map(
  [...new Set(BUILT_INS.map((fn) => fn.name))].map((name) => [name, BUILT_INS.filter((fn) => fn.name === name)])
)

/**
 * The function a call of `name` with `arity` arguments dispatches to (§3.5: overloads
 * differ by arity; a variadic one takes any number from its fixed parameters on), or
 * `undefined` when there is none (a MissingFunctionError when evaluated).
 */
export function resolveFunction (name: string, arity: number): FunctionDef | undefined {
  const overloads = BY_NAME.get(name.toUpperCase()) ?? []
  return overloads.find((fn) => fn.rest === undefined && fn.params.length === arity) ??
    overloads.find((fn) => fn.rest !== undefined && arity >= fn.params.length)
}
