import type { ArithmeticOp, BinaryOp, ComparisonOp, InStep, LikeStep, LogicOp, MissingCall, Node, Step } from './ast.js'
import { CesqlSyntaxError, type Position } from './errors.js'
import { resolveFunction } from './functions.js'
import { quoted, tokenize, type Token } from './lexer.js'
import { compileLike, type LikePattern } from './like.js'
import { integer, isInt32 } from './values.js'

/** How far an expression may nest. */
export interface ParseOptions {
  /**
   * Levels of nesting allowed: each parenthesis, NOT, unary minus, function call and IN
   * list opens one. Deeper is a `CesqlSyntaxError` with `limit: 'depth'`, raised before
   * the parser descends, so the bound also bounds its stack.
   */
  readonly maxDepth: number
}

/** A parsed expression, with the calls no function takes (each evaluates to `false` with a MissingFunctionError). */
export interface Parsed {
  readonly root: Node
  readonly missingFunctions: readonly MissingCall[]
}

const LOGIC: readonly LogicOp[] = ['AND', 'OR', 'XOR']
const COMPARISON: readonly ComparisonOp[] = ['=', '!=', '<>', '<', '<=', '>', '>=']
const ADDITIVE: readonly ArithmeticOp[] = ['+', '-']
const MULTIPLICATIVE: readonly ArithmeticOp[] = ['*', '/', '%']

const ATTRIBUTE_NAME = /^[A-Za-z0-9]+$/
const FUNCTION_NAME = /^[A-Za-z][A-Za-z_]*$/

/**
 * Parse a CESQL expression (§2), with the precedence of §3.6, loosest first:
 * AND/OR/XOR (one level, left to right, as §3.6 says: not SQL's AND-before-OR);
 * comparisons; `+ -`; `* / %`; LIKE and IN; NOT and unary minus (so `NOT a = b` is
 * `(NOT a) = b`); function calls, parentheses, EXISTS and operands.
 */
export function parse (source: string, options: ParseOptions): Parsed {
  return new Parser(tokenize(source), options.maxDepth).parse()
}

function unexpected (token: Token): CesqlSyntaxError {
  return new CesqlSyntaxError(token.kind === 'end' ? 'unexpected end of expression' : `unexpected token ${quoted(token.text)}`, token.position)
}

function isSymbol (token: Token, symbol: string): boolean {
  return token.kind === 'symbol' && token.value === symbol
}

function isKeyword (token: Token, keyword: string): boolean {
  return token.kind === 'keyword' && token.value === keyword
}

class Parser {
  readonly #tokens: readonly Token[]
  readonly #end: Token
  readonly #maxDepth: number
  readonly #missing: MissingCall[] = []
  #index = 0
  #depth = 0

  constructor (tokens: readonly Token[], maxDepth: number) {
    this.#tokens = tokens
    this.#end = tokens[tokens.length - 1] ?? { kind: 'end', text: '', value: '', position: { line: 1, column: 1 } }
    this.#maxDepth = maxDepth
  }

  parse (): Parsed {
    const root = this.#logic()
    const rest = this.#peek()
    if (rest.kind !== 'end') throw unexpected(rest)
    return { root, missingFunctions: this.#missing }
  }

  /** The token `offset` ahead; past the end, the `end` token. */
  #peek (offset = 0): Token {
    return this.#tokens[this.#index + offset] ?? this.#end
  }

  #next (): Token {
    const token = this.#peek()
    if (token.kind !== 'end') this.#index++
    return token
  }

  #expect (symbol: string, what: string): void {
    const token = this.#next()
    if (!isSymbol(token, symbol)) throw new CesqlSyntaxError(`expected ${what}, found ${token.kind === 'end' ? 'the end of the expression' : quoted(token.text)}`, token.position)
  }

  /** One more level of nesting, opened at `position`, for the time `parse` runs. */
  #nested<T> (position: Position, parse: () => T): T {
    if (this.#depth >= this.#maxDepth) throw new CesqlSyntaxError(`expression nests deeper than ${this.#maxDepth} levels`, position, 'depth')
    this.#depth++
    try {
      return parse()
    } finally {
      this.#depth--
    }
  }

  #logic (): Node {
    const { first, steps } = this.#steps(LOGIC, () => this.#comparison())
    return steps.length === 0 ? first : { kind: 'chain', level: 'logic', first, steps, position: first.position, type: 'Boolean' }
  }

  #comparison (): Node {
    const { first, steps } = this.#steps(COMPARISON, () => this.#additive())
    return steps.length === 0 ? first : { kind: 'chain', level: 'comparison', first, steps, position: first.position, type: 'Boolean' }
  }

  #additive (): Node {
    const { first, steps } = this.#steps(ADDITIVE, () => this.#multiplicative())
    return steps.length === 0 ? first : { kind: 'chain', level: 'additive', first, steps, position: first.position, type: 'Integer' }
  }

  #multiplicative (): Node {
    const { first, steps } = this.#steps(MULTIPLICATIVE, () => this.#postfix())
    return steps.length === 0 ? first : { kind: 'chain', level: 'multiplicative', first, steps, position: first.position, type: 'Integer' }
  }

  /** Operands of one level joined by its operators, read in a loop: a long chain adds no depth. */
  #steps<Op extends BinaryOp> (ops: readonly Op[], operand: () => Node): { first: Node, steps: Array<Step<Op>> } {
    const first = operand()
    const steps: Array<Step<Op>> = []
    for (;;) {
      const token = this.#peek()
      const op = token.kind === 'symbol' || token.kind === 'keyword' ? ops.find((o) => o === token.value) : undefined
      if (op === undefined) return { first, steps }
      this.#next()
      steps.push({ op, operand: operand(), position: token.position })
    }
  }

  /** `x [NOT] LIKE 'p'` and `x [NOT] IN (...)`, any number in turn. */
  #postfix (): Node {
    const operand = this.#unary()
    const steps: Array<LikeStep | InStep> = []
    for (;;) {
      const token = this.#peek()
      const negated = isKeyword(token, 'NOT')
      const op = this.#peek(negated ? 1 : 0)
      if (isKeyword(op, 'LIKE')) {
        this.#index += negated ? 2 : 1
        steps.push({ op: 'LIKE', negated, pattern: this.#pattern(), position: token.position })
      } else if (isKeyword(op, 'IN')) {
        this.#index += negated ? 2 : 1
        steps.push({ op: 'IN', negated, set: this.#set(op), position: token.position })
      } else {
        break
      }
    }
    return steps.length === 0 ? operand : { kind: 'postfix', operand, steps, position: operand.position, type: 'Boolean' }
  }

  /** LIKE's pattern must be a string literal, never an expression (§3.4.3). */
  #pattern (): LikePattern {
    const token = this.#next()
    if (token.kind !== 'string') throw new CesqlSyntaxError(`LIKE needs a string literal pattern, found ${token.kind === 'end' ? 'the end of the expression' : quoted(token.text)}`, token.position)
    return compileLike(token.value)
  }

  /** `(y1, y2, ...)`: one element at least. */
  #set (op: Token): Node[] {
    const open = this.#peek()
    if (!isSymbol(open, '(')) throw new CesqlSyntaxError(`IN needs a parenthesised list, found ${open.kind === 'end' ? 'the end of the expression' : quoted(open.text)}`, open.position)
    this.#next()
    return this.#nested(op.position, () => this.#list())
  }

  /** Expressions separated by commas, up to the closing parenthesis. */
  #list (): Node[] {
    const items: Node[] = []
    for (;;) {
      items.push(this.#logic())
      const token = this.#next()
      if (isSymbol(token, ')')) return items
      if (!isSymbol(token, ',')) throw token.kind === 'end' ? unexpected(token) : new CesqlSyntaxError(`expected "," or ")", found ${quoted(token.text)}`, token.position)
    }
  }

  #unary (): Node {
    const token = this.#peek()
    if (isKeyword(token, 'NOT')) {
      this.#next()
      const operand = this.#nested(token.position, () => this.#unary())
      return { kind: 'not', operand, position: token.position, type: 'Boolean' }
    }
    if (isSymbol(token, '-') || isSymbol(token, '+')) {
      this.#next()
      // a signed integer literal (§2.2): the only way to write -2147483648
      const digits = this.#peek()
      if (digits.kind === 'integer') return this.#integer(`${token.value}${this.#next().text}`, token.position)
      if (token.value === '+') throw unexpected(token)
      const operand = this.#nested(token.position, () => this.#unary())
      return { kind: 'negate', operand, position: token.position, type: 'Integer' }
    }
    return this.#primary()
  }

  #primary (): Node {
    const token = this.#next()
    switch (token.kind) {
      case 'integer':
        return this.#integer(token.text, token.position)
      case 'string':
        return { kind: 'literal', value: token.value, position: token.position, type: 'String' }
      case 'keyword':
        if (token.value === 'TRUE' || token.value === 'FALSE') return { kind: 'literal', value: token.value === 'TRUE', position: token.position, type: 'Boolean' }
        if (token.value === 'EXISTS') return { kind: 'exists', name: this.#attributeName(), position: token.position, type: 'Boolean' }
        throw unexpected(token)
      case 'name':
        if (isSymbol(this.#peek(), '(')) return this.#call(token)
        if (!ATTRIBUTE_NAME.test(token.text)) throw new CesqlSyntaxError(`${quoted(token.text)} is not an attribute name (letters and digits only)`, token.position)
        // attribute names are lower case (CloudEvents §3.1.1); the reference parser lowers them too (`EXISTS SOURCE`)
        return { kind: 'attribute', name: token.text.toLowerCase(), position: token.position, type: 'Any' }
      case 'symbol':
        if (token.value !== '(') throw unexpected(token)
        return this.#nested(token.position, () => {
          const inner = this.#logic()
          this.#expect(')', '")"')
          return inner
        })
      case 'end':
        throw unexpected(token)
    }
  }

  #attributeName (): string {
    const token = this.#next()
    if (token.kind !== 'name' || !ATTRIBUTE_NAME.test(token.text)) {
      throw new CesqlSyntaxError(`EXISTS needs an attribute name, found ${token.kind === 'end' ? 'the end of the expression' : quoted(token.text)}`, token.position)
    }
    return token.text.toLowerCase()
  }

  #integer (text: string, position: Position): Node {
    const n = Number(text)
    if (!isInt32(n)) throw new CesqlSyntaxError(`integer ${text} is outside the 32-bit range`, position)
    return { kind: 'literal', value: integer(n), position, type: 'Integer' }
  }

  /** `NAME(args)`: resolved now, by name and number of arguments. */
  #call (name: Token): Node {
    if (!FUNCTION_NAME.test(name.text)) throw new CesqlSyntaxError(`${quoted(name.text)} is not a function name (letters and _ only)`, name.position)
    const open = this.#next()
    const args = this.#nested(open.position, () => {
      if (!isSymbol(this.#peek(), ')')) return this.#list()
      this.#next()
      return []
    })
    const fn = resolveFunction(name.text, args.length)
    if (fn !== undefined) return { kind: 'call', fn, args, position: name.position, type: fn.returns }
    const missing: MissingCall = { kind: 'missing-call', name: name.text.toUpperCase(), arity: args.length, position: name.position, type: 'Boolean' }
    this.#missing.push(missing)
    return missing
  }
}
