import type { ArithmeticChain, Call, ComparisonChain, ComparisonOp, InStep, LikeStep, LogicChain, Node, Postfix, Step } from './ast.js'
import { where, type EvaluationError, type EvaluationErrorKind, type Position } from './errors.js'
import { LIKE_STEPS, matchLike } from './like.js'
import { INT_MIN, ZERO, attributeOf, castTo, integer, isInt32, show, toText, typeOf, type CesqlType, type CesqlValue, type EventAttributes } from './values.js'

/** What an expression evaluates to: a value always (§3.3), and the error that stopped it, if any. */
export interface Evaluation {
  readonly value: CesqlValue
  readonly error?: EvaluationError
}

/**
 * Evaluation state: the event and the first error. Evaluation stops at the first error
 * (the "fail fast" mode of §4.1, which §1.2 asks of filters): every operator that sees
 * an operand fail returns its own type's zero value, up to the root. The conformance
 * tests expect that (`true AND (1 != 1 / 0)` is `false`, `NOT missing` is `false`),
 * and a function's own error keeps its result (`ABS(-2147483648)` is `2147483647`).
 */
interface Scope {
  readonly event: EventAttributes
  error: EvaluationError | undefined
}

/** Evaluate a parsed expression against one event; never throws. */
export function evaluate (root: Node, event: EventAttributes): Evaluation {
  const scope: Scope = { event, error: undefined }
  const value = valueOf(root, scope)
  return scope.error === undefined ? { value } : { value, error: scope.error }
}

/** Record the first error and return `zero`. */
function fail<T extends CesqlValue> (scope: Scope, kind: EvaluationErrorKind, message: string, position: Position, zero: T): T {
  scope.error ??= { kind, message: `${message} at ${where(position)}`, position }
  return zero
}

/** Recursion follows the tree's depth, which the parser bounded (chains and postfix operators are loops). */
function valueOf (node: Node, scope: Scope): CesqlValue {
  switch (node.kind) {
    case 'literal':
      return node.value
    case 'attribute': {
      const value = attributeOf(scope.event, node.name)
      // its type is unknown: Boolean, as §3.2 says; the operator above returns its own zero value
      return value ?? fail(scope, 'missingAttribute', `the event has no attribute "${node.name}"`, node.position, false)
    }
    case 'exists':
      return attributeOf(scope.event, node.name) !== undefined
    case 'not': {
      const operand = asBoolean(node.operand, scope)
      return scope.error === undefined ? !operand : false
    }
    case 'negate':
      return negate(asInteger(node.operand, scope), node.position, scope)
    case 'chain':
      return node.level === 'logic' ? logic(node, scope) : node.level === 'comparison' ? comparison(node, scope) : arithmetic(node, scope)
    case 'postfix':
      return postfix(node, scope)
    case 'call':
      return call(node, scope)
    case 'missing-call':
      return fail(scope, 'missingFunction', `no function ${node.name} takes ${node.arity} argument${node.arity === 1 ? '' : 's'}`, node.position, false)
  }
}

/** `node`'s value cast to `target` (§3.7), or the zero value when it or the cast failed. */
function cast (node: Node, target: CesqlType, scope: Scope): CesqlValue {
  const value = valueOf(node, scope)
  if (scope.error !== undefined) return ZERO[target]
  return castTo(value, target) ?? fail(scope, 'cast', `cannot cast ${show(value)} to ${target}`, node.position, ZERO[target])
}

function asBoolean (node: Node, scope: Scope): boolean {
  return cast(node, 'Boolean', scope) === true
}

function asInteger (node: Node, scope: Scope): number {
  const value = cast(node, 'Integer', scope)
  return typeof value === 'number' ? value : 0
}

function negate (n: number, position: Position, scope: Scope): number {
  if (scope.error !== undefined) return 0
  if (n === INT_MIN) return fail(scope, 'math', `-(${INT_MIN}) is outside the 32-bit range`, position, 0)
  return integer(-n)
}

/** AND, OR, XOR left to right. AND after `false` and OR after `true` do not evaluate their right operand (§3.4.2). */
function logic (node: LogicChain, scope: Scope): boolean {
  let result = asBoolean(node.first, scope)
  for (const step of node.steps) {
    if (scope.error !== undefined) return false
    if ((step.op === 'AND' && !result) || (step.op === 'OR' && result)) continue
    const right = asBoolean(step.operand, scope)
    result = step.op === 'XOR' ? result !== right : right
  }
  return scope.error === undefined ? result : false
}

/**
 * Comparisons left to right. `=`, `!=` and `<>` exist for each type: the left operand
 * is cast to the right one's type (§3.7, "ambiguous" operators: `'TRUE' = true` is true,
 * `true = 'TRUE'` is false). `<`, `<=`, `>`, `>=` take Integers only: both are cast.
 */
function comparison (node: ComparisonChain, scope: Scope): boolean {
  let left = valueOf(node.first, scope)
  for (const step of node.steps) {
    if (scope.error !== undefined) return false
    const right = valueOf(step.operand, scope)
    if (scope.error !== undefined) return false
    left = compare(step, left, right, scope)
  }
  return scope.error === undefined && left === true
}

function compare (step: Step<ComparisonOp>, left: CesqlValue, right: CesqlValue, scope: Scope): boolean {
  const { op, position } = step
  if (op === '=' || op === '!=' || op === '<>') {
    const target = typeOf(right)
    const cast = castTo(left, target)
    if (cast === undefined) return fail(scope, 'cast', `cannot cast ${show(left)} to ${target} to compare it with ${show(right)}`, position, false)
    return (cast === right) === (op === '=')
  }
  const x = castTo(left, 'Integer')
  const y = castTo(right, 'Integer')
  if (x === undefined || y === undefined) return fail(scope, 'cast', `cannot cast ${show(x === undefined ? left : right)} to Integer for ${op}`, position, false)
  switch (op) {
    case '<': return x < y
    case '<=': return x <= y
    case '>': return x > y
    case '>=': return x >= y
  }
}

/** `+ - * / %` on 32-bit Integers: division truncates, `%` takes the dividend's sign; 0 with a MathError on a zero divisor or an overflow. */
function arithmetic (node: ArithmeticChain, scope: Scope): number {
  let result = asInteger(node.first, scope)
  for (const step of node.steps) {
    if (scope.error !== undefined) return 0
    const right = asInteger(step.operand, scope)
    if (scope.error !== undefined) return 0
    if ((step.op === '/' || step.op === '%') && right === 0) return fail(scope, 'math', `${step.op === '/' ? 'division' : 'modulo'} by zero`, step.position, 0)
    const exact = step.op === '+' ? result + right : step.op === '-' ? result - right : step.op === '*' ? result * right : step.op === '/' ? Math.trunc(result / right) : result % right
    if (!isInt32(exact)) return fail(scope, 'math', `${result} ${step.op} ${right} is outside the 32-bit range`, step.position, 0)
    result = integer(exact)
  }
  return scope.error === undefined ? result : 0
}

/** LIKE casts its operand to String (§3.4.3); IN compares with `=`, casting each element to the operand's type (§3.4.5). */
function postfix (node: Postfix, scope: Scope): boolean {
  let current = valueOf(node.operand, scope)
  for (const step of node.steps) {
    if (scope.error !== undefined) return false
    const matched = step.op === 'LIKE' ? like(step, current, scope) : isIn(step, current, scope)
    if (scope.error !== undefined) return false
    current = matched !== step.negated
  }
  return scope.error === undefined && current === true
}

/** LIKE on `value` as a String; a match that would take too long is an evaluation error. */
function like (step: LikeStep, value: CesqlValue, scope: Scope): boolean {
  const matched = matchLike(step.pattern, toText(value))
  return matched ?? fail(scope, 'generic', `LIKE gave up after ${LIKE_STEPS} steps (a long value against a long pattern)`, step.position, false)
}

/** Elements are evaluated in order until one equals `value`. */
function isIn (step: InStep, value: CesqlValue, scope: Scope): boolean {
  const target = typeOf(value)
  for (const element of step.set) {
    const item = valueOf(element, scope)
    if (scope.error !== undefined) return false
    const cast = castTo(item, target)
    if (cast === undefined) return fail(scope, 'cast', `cannot cast ${show(item)} to ${target} to compare it with ${show(value)}`, element.position, false)
    if (cast === value) return true
  }
  return false
}

/** Arguments are cast to the parameters' types (§3.7); the function's own errors keep the value it returns (§3.5.3). */
function call (node: Call, scope: Scope): CesqlValue {
  const { fn } = node
  const args: CesqlValue[] = []
  for (const [i, arg] of node.args.entries()) {
    const param = fn.params[i] ?? fn.rest ?? 'Any'
    args.push(param === 'Any' ? valueOf(arg, scope) : cast(arg, param, scope))
    if (scope.error !== undefined) return ZERO[fn.returns]
  }
  return fn.apply(args, (kind, message) => { fail(scope, kind, `${fn.name}: ${message}`, node.position, false) })
}
