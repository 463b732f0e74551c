/**
 * CloudEvents SQL Expression Language 1.0 (CESQL): parse an expression once, evaluate
 * it against many events. The whole language of the specification (cloudevents/spec,
 * `cesql/spec.md`): literals, attributes, every operator, LIKE, IN, EXISTS, the
 * built-in functions, implicit casts and the error semantics; its conformance tests
 * (test/fixtures/cesql-tck) run in test/plugins/cesql-tck.test.ts.
 */
import type { MissingCall, Node, NodeType } from './ast.js'
import { evaluate, type Evaluation } from './evaluate.js'
import { parse } from './parser.js'
import type { EventAttributes } from './values.js'

export { CesqlSyntaxError, where, type CesqlLimit, type EvaluationError, type EvaluationErrorKind, type Position } from './errors.js'
export { attributeOf, toText, type CesqlType, type CesqlValue, type EventAttributes } from './values.js'
export type { Evaluation } from './evaluate.js'
export type { NodeType } from './ast.js'

/** Nesting allowed when the caller says nothing: far below what the stack takes. */
export const DEFAULT_MAX_DEPTH = 64

export interface CesqlOptions {
  /** Levels of nesting allowed (parentheses, NOT, unary minus, function calls, IN lists); default `DEFAULT_MAX_DEPTH`. */
  readonly maxDepth?: number
}

/** A parsed expression, ready to evaluate against any number of events. */
export interface CesqlExpression {
  readonly source: string
  /** The result's type as far as parsing knows it (`Any` for a bare attribute). */
  readonly type: NodeType
  /** Calls no built-in function takes: each evaluates to `false` with a MissingFunctionError. */
  readonly missingFunctions: readonly MissingCall[]
  /** The value for `event`, and the error that stopped the evaluation (§3.3); never throws. */
  readonly evaluate: (event: EventAttributes) => Evaluation
}

/** Parse `source`; a `CesqlSyntaxError` names what is wrong and where (`cesql: unexpected token "AND" at 1:12`). */
export function compileCesql (source: string, options: CesqlOptions = {}): CesqlExpression {
  const { root, missingFunctions } = parse(source, { maxDepth: options.maxDepth ?? DEFAULT_MAX_DEPTH })
  return {
    source,
    type: root.type,
    missingFunctions,
    evaluate: (event) => evaluate(root, event)
  }
}

export type { Node }
