import type { Position } from './errors.js'
import type { FunctionDef } from './functions.js'
import type { LikePattern } from './like.js'
import type { CesqlType, CesqlValue } from './values.js'

/**
 * The syntax tree of a CESQL expression. Operators of one precedence level in a row
 * (`a OR b OR c`, `1 + 2 - 3`) are one `Chain`, and LIKE and IN after one operand one
 * `Postfix`, so that the tree is only as deep as the expression's nesting (parentheses,
 * NOT, unary minus, function calls, IN lists), which the parser bounds: neither parsing
 * nor evaluating can overflow the stack, however long the expression.
 */
export type Node = Literal | Attribute | Exists | Not | Negate | Chain | Postfix | Call | MissingCall

/** A node's result type, known before evaluation; an attribute's is known only then. */
export type NodeType = CesqlType | 'Any'

interface Base {
  /** Where the node starts (an operator chain: its first operand). */
  readonly position: Position
  readonly type: NodeType
}

/** `TRUE`, `42`, `'text'`. */
export interface Literal extends Base {
  readonly kind: 'literal'
  readonly value: CesqlValue
}

/** A context attribute or extension, by its lower-case name. */
export interface Attribute extends Base {
  readonly kind: 'attribute'
  readonly name: string
}

/** `EXISTS name`: whether the event has the attribute. */
export interface Exists extends Base {
  readonly kind: 'exists'
  readonly name: string
}

/** `NOT x`. */
export interface Not extends Base {
  readonly kind: 'not'
  readonly operand: Node
}

/** Unary minus on anything but an integer literal (`-5` is a literal: `-2147483648` fits, `2147483648` does not). */
export interface Negate extends Base {
  readonly kind: 'negate'
  readonly operand: Node
}

/** The binary operators (§2.3), grouped by level in `Chain`. */
export type LogicOp = 'AND' | 'OR' | 'XOR'
/** Comparison operators; `!=` and `<>` are the same. */
export type ComparisonOp = '=' | '!=' | '<>' | '<' | '<=' | '>' | '>='
/** Arithmetic operators on Integers. */
export type ArithmeticOp = '+' | '-' | '*' | '/' | '%'
/** Every binary operator. */
export type BinaryOp = LogicOp | ComparisonOp | ArithmeticOp

/** One operator and its right operand; `position` is the operator's. */
export interface Step<Op extends BinaryOp> {
  readonly op: Op
  readonly operand: Node
  readonly position: Position
}

/** Binary operators of one precedence level, applied left to right (§3.6). */
export type Chain = LogicChain | ComparisonChain | ArithmeticChain

interface ChainOf<Level extends string, Op extends BinaryOp> extends Base {
  readonly kind: 'chain'
  readonly level: Level
  readonly first: Node
  readonly steps: ReadonlyArray<Step<Op>>
}

/** `AND`, `OR`, `XOR` in a row. */
export type LogicChain = ChainOf<'logic', LogicOp>
/** Comparisons in a row (`a = b = c` compares `a = b` with `c`). */
export type ComparisonChain = ChainOf<'comparison', ComparisonOp>
/** `*`, `/`, `%` (level `multiplicative`) or `+`, `-` (level `additive`). */
export type ArithmeticChain = ChainOf<'multiplicative' | 'additive', ArithmeticOp>

/** `x [NOT] LIKE 'pattern'`, with the pattern compiled once. */
export interface LikeStep {
  readonly op: 'LIKE'
  readonly negated: boolean
  readonly pattern: LikePattern
  readonly position: Position
}

/** `x [NOT] IN (y1, y2, ...)`. */
export interface InStep {
  readonly op: 'IN'
  readonly negated: boolean
  readonly set: readonly Node[]
  readonly position: Position
}

/** LIKE and IN applied in turn to one operand. */
export interface Postfix extends Base {
  readonly kind: 'postfix'
  readonly operand: Node
  readonly steps: ReadonlyArray<LikeStep | InStep>
}

/** A call of a built-in function, resolved by name and number of arguments when parsed. */
export interface Call extends Base {
  readonly kind: 'call'
  readonly fn: FunctionDef
  readonly args: readonly Node[]
}

/** A call no function takes: `false` with a MissingFunctionError when evaluated (§3.5). */
export interface MissingCall extends Base {
  readonly kind: 'missing-call'
  readonly name: string
  readonly arity: number
}
