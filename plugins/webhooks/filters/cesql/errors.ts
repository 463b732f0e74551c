/** CESQL's errors (§3.3): a parse error is thrown; an evaluation error is returned with the value. */

/** A place in an expression: 1-based line and column, counted in characters (code points). */
export interface Position {
  readonly line: number
  readonly column: number
}

/** The error kinds of §3.3, named as the conformance tests name them. */
export type EvaluationErrorKind = 'math' | 'cast' | 'missingAttribute' | 'missingFunction' | 'functionEvaluation' | 'generic'

/**
 * An error raised while evaluating: the expression still has a value (the zero value of
 * its type, or what the failing function returns), and a filter does not pass.
 */
export interface EvaluationError {
  readonly kind: EvaluationErrorKind
  /** What went wrong and where: `cannot cast "abc" to Integer at 1:5`. */
  readonly message: string
  readonly position: Position
}

/** Which bound an expression broke, when it broke one. */
export type CesqlLimit = 'depth'

/** An expression that does not parse (ParseError): `cesql: unexpected token "AND" at 1:12`. */
export class CesqlSyntaxError extends Error {
  readonly kind = 'parse'
  /**
   * @param detail what is wrong, without the position: `unexpected token "AND"`
   * @param limit set when the expression is well-formed but nests deeper than allowed
   */
  constructor (readonly detail: string, readonly position: Position, readonly limit?: CesqlLimit) {
    super(`cesql: ${detail} at ${where(position)}`)
    this.name = 'CesqlSyntaxError'
  }
}

/** `line:column`. */
export function where (position: Position): string {
  return `${position.line}:${position.column}`
}
