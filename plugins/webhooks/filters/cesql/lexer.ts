import { CesqlSyntaxError, type Position } from './errors.js'

/**
 * A token of a CESQL expression (§2): `value` is what the parser reads (a keyword in
 * upper case, a string literal's value, the symbol), `text` what the expression says.
 */
export interface Token {
  readonly kind: 'integer' | 'string' | 'name' | 'keyword' | 'symbol' | 'end'
  readonly text: string
  readonly value: string
  readonly position: Position
}

/** Keywords are case-insensitive (§2): `and` is `AND`. None can name an attribute or a function. */
const KEYWORDS: ReadonlySet<string> = new Set(['AND', 'OR', 'XOR', 'NOT', 'LIKE', 'IN', 'EXISTS', 'TRUE', 'FALSE'])

/** Two-character symbols first, so that `<=` is not `<` then `=`. */
const SYMBOLS = ['!=', '<>', '<=', '>=', '(', ')', ',', '+', '-', '*', '/', '%', '=', '<', '>'] as const

/** The whitespace the reference grammar skips between tokens (CESQLLexer.g4 `SPACE`). */
const SPACE: ReadonlySet<string> = new Set([' ', '\t', '\r', '\n'])

const WORD_CHAR = /^[A-Za-z0-9_]$/
const DIGITS = /^[0-9]+$/
const LETTERS = /^[A-Za-z]+$/
/** An attribute name (§2.2, case-insensitive as the reference parser reads it) or a function name (§2.4). */
const NAME = /^(?:[A-Za-z0-9]+|[A-Za-z][A-Za-z_]*)$/

/** A token's text as error messages show it, shortened past 40 characters. */
export function quoted (text: string): string {
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}…` : text)
}

/**
 * The tokens of `source`, ending with an `end` token placed just after its last
 * character. Throws a `CesqlSyntaxError` at the first character no token can start
 * with, and at a string literal that is not closed.
 */
export function tokenize (source: string): Token[] {
  return new Lexer(source).tokens()
}

class Lexer {
  /** Code points, so that columns count characters. */
  readonly #chars: readonly string[]
  #index = 0
  #line = 1
  #column = 1

  constructor (source: string) {
    this.#chars = Array.from(source)
  }

  tokens (): Token[] {
    const tokens: Token[] = []
    for (let c = this.#peek(); c !== undefined; c = this.#peek()) {
      if (SPACE.has(c)) {
        this.#advance()
        continue
      }
      const position = this.#position()
      if (c === '\'' || c === '"') tokens.push(this.#string(c, position))
      else if (WORD_CHAR.test(c)) tokens.push(this.#word(position))
      else tokens.push(this.#symbol(c, position))
    }
    tokens.push({ kind: 'end', text: '', value: '', position: this.#position() })
    return tokens
  }

  #peek (offset = 0): string | undefined {
    return this.#chars[this.#index + offset]
  }

  #position (): Position {
    return { line: this.#line, column: this.#column }
  }

  #advance (): string {
    const c = this.#chars[this.#index++] ?? ''
    if (c === '\n') {
      this.#line++
      this.#column = 1
    } else {
      this.#column++
    }
    return c
  }

  /**
   * A literal in `quote`s (§2.2). A backslash before the same quote stands for it; before
   * anything else it stays, with what follows (`'ab\c'` is `ab\c`, as the reference SDK
   * reads it), so that LIKE sees its `\%` and `\_` escapes. A doubled quote stands for
   * one, as in SQL (the reference lexer accepts it too).
   */
  #string (quote: string, position: Position): Token {
    const start = this.#index
    this.#advance()
    let value = ''
    for (;;) {
      const c = this.#peek()
      if (c === undefined) throw new CesqlSyntaxError('unterminated string literal', position)
      if (c === '\\' && this.#peek(1) !== undefined) {
        this.#advance()
        const escaped = this.#advance()
        value += escaped === quote ? quote : `\\${escaped}`
      } else if (c === quote && this.#peek(1) === quote) {
        this.#advance()
        this.#advance()
        value += quote
      } else if (c === quote) {
        this.#advance()
        return { kind: 'string', text: this.#chars.slice(start, this.#index).join(''), value, position }
      } else {
        value += this.#advance()
      }
    }
  }

  /** An integer literal (its sign is the parser's), a keyword, or a name. */
  #word (position: Position): Token {
    let text = ''
    for (let c = this.#peek(); c !== undefined && WORD_CHAR.test(c); c = this.#peek()) text += this.#advance()
    if (DIGITS.test(text)) return { kind: 'integer', text, value: text, position }
    const upper = text.toUpperCase()
    if (LETTERS.test(text) && KEYWORDS.has(upper)) return { kind: 'keyword', text, value: upper, position }
    if (!NAME.test(text)) throw new CesqlSyntaxError(`${quoted(text)} is neither an attribute name (letters and digits) nor a function name (letters and _)`, position)
    return { kind: 'name', text, value: text, position }
  }

  #symbol (c: string, position: Position): Token {
    const two = c + (this.#peek(1) ?? '')
    const symbol = SYMBOLS.find((s) => s === two) ?? SYMBOLS.find((s) => s === c)
    if (symbol === undefined) throw new CesqlSyntaxError(`unexpected character ${quoted(c)}`, position)
    for (let i = 0; i < symbol.length; i++) this.#advance()
    return { kind: 'symbol', text: symbol, value: symbol, position }
  }
}
