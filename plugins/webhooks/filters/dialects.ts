import { BadRequestError } from '../../../src/core/index.js'
import { CesqlSyntaxError, attributeOf, compileCesql, toText, where, type EvaluationError, type EventAttributes, type Position } from './cesql/index.js'

/** Bounds of a subscription's `filters` (`webhooks.filters.*`): checked when it is registered. */
export interface FilterLimits {
  /** Characters of one `cesql` expression. */
  readonly maxExpressionLength: number
  /** Levels of `all`/`any`/`not`, and, separately, of nesting within one `cesql` expression. */
  readonly maxDepth: number
  /** Filters in all, nested ones included (each dialect object counts one). */
  readonly maxFilters: number
}

/** Which bound a refused subscription broke, as `ce_broker_webhook_filters_refused_total` counts it. */
export type FilterRefusal = 'invalid' | 'too_long' | 'too_deep' | 'too_many'

/** Hears of each evaluation error: the event does not pass the `cesql` filter that raised it. */
export type FilterErrorListener = (error: EvaluationError) => void

/**
 * A subscription's filters compiled into one predicate: true when the event passes them
 * all. Never throws: an expression that fails to evaluate does not pass (and is told to
 * `onError`).
 */
export type EventFilter = (event: EventAttributes, onError?: FilterErrorListener) => boolean

/**
 * Filters that cannot be compiled: a 400 naming the filter's path, and for a `cesql`
 * expression the position (`filters[1].cesql: unexpected token "AND" at 1:12`).
 */
export class InvalidFilterError extends BadRequestError {
  constructor (readonly path: string, detail: string, readonly refusal: FilterRefusal = 'invalid', readonly position?: Position) {
    super(`${path}: ${detail}`)
    this.name = 'InvalidFilterError'
  }

  /** The `details` of the 400: the path, and the line and column in the expression when there is one. */
  get details (): { readonly path: string, readonly line?: number, readonly column?: number } {
    return this.position === undefined ? { path: this.path } : { path: this.path, line: this.position.line, column: this.position.column }
  }
}

const DIALECTS = ['exact', 'prefix', 'suffix', 'all', 'any', 'not', 'cesql'] as const

/** CloudEvents attribute names (CloudEvents §3.1.1), as the Knative filters take them. */
const ATTRIBUTE_NAME = /^[a-z0-9]+$/

/** Every event passes: a subscription without filters. */
const PASS: EventFilter = () => true

/**
 * Compile a subscription's `filters`, Knative's shape (the CloudEvents Subscriptions
 * API's dialects, with `cesql` for `sql`): an array whose filters must all pass; each
 * is one of `exact`, `prefix`, `suffix` (one attribute each), `all`, `any` (non-empty
 * arrays), `not` (one filter) and `cesql` (an expression that must evaluate to `true`).
 * Throws an `InvalidFilterError` naming the first problem.
 */
export function compileFilters (filters: unknown, limits: FilterLimits): EventFilter {
  if (filters === undefined) return PASS
  const compiler = new Compiler(limits)
  const all = compiler.list(filters, 'filters', 1, true)
  if (all.length === 0) return PASS
  if (all.length === 1 && all[0] !== undefined) return all[0]
  return (event, onError) => all.every((filter) => filter(event, onError))
}

class Compiler {
  readonly #limits: FilterLimits
  #count = 0

  constructor (limits: FilterLimits) {
    this.#limits = limits
  }

  /** The filters of an array; nested arrays (`all`, `any`) may not be empty. */
  list (value: unknown, path: string, depth: number, mayBeEmpty = false): EventFilter[] {
    if (!Array.isArray(value)) throw new InvalidFilterError(path, `must be an array of filters, got ${describe(value)}`)
    if (value.length === 0 && !mayBeEmpty) throw new InvalidFilterError(path, 'must hold one filter at least')
    return value.map((filter: unknown, i) => this.one(filter, `${path}[${i}]`, depth))
  }

  one (filter: unknown, path: string, depth: number): EventFilter {
    const { maxDepth, maxFilters } = this.#limits
    if (depth > maxDepth) throw new InvalidFilterError(path, `nests deeper than webhooks.filters.maxDepth (${maxDepth}) levels of all, any and not`, 'too_deep')
    if (++this.#count > maxFilters) throw new InvalidFilterError(path, `is one filter more than webhooks.filters.maxFilters (${maxFilters}) allows, nested ones included`, 'too_many')
    if (!isObject(filter)) throw new InvalidFilterError(path, `must be an object with one of ${DIALECTS.join(', ')}; got ${describe(filter)}`)
    const keys = Object.keys(filter)
    const [dialect] = keys
    if (keys.length !== 1 || dialect === undefined) throw new InvalidFilterError(path, `must have exactly one of ${DIALECTS.join(', ')}; got ${keys.length === 0 ? 'none' : keys.join(', ')}`)
    const body = filter[dialect]
    const at = `${path}.${dialect}`
    switch (dialect) {
      case 'exact': {
        const [name, value] = this.attribute(body, at)
        return (event) => text(event, name) === value
      }
      case 'prefix': {
        const [name, value] = this.attribute(body, at)
        return (event) => text(event, name)?.startsWith(value) === true
      }
      case 'suffix': {
        const [name, value] = this.attribute(body, at)
        return (event) => text(event, name)?.endsWith(value) === true
      }
      case 'all': {
        const all = this.list(body, at, depth + 1)
        return (event, onError) => all.every((f) => f(event, onError))
      }
      case 'any': {
        const any = this.list(body, at, depth + 1)
        return (event, onError) => any.some((f) => f(event, onError))
      }
      case 'not': {
        const inner = this.one(body, at, depth + 1)
        // an expression that fails is false, so `not` passes the event, as Knative's does
        return (event, onError) => !inner(event, onError)
      }
      case 'cesql':
        return this.cesql(body, at)
      default:
        throw new InvalidFilterError(path, `${JSON.stringify(dialect)} is not a filter dialect; known: ${DIALECTS.join(', ')}`)
    }
  }

  /** `{ "<attribute>": "<non-empty string>" }`: exactly one attribute, as Knative has it. */
  attribute (body: unknown, path: string): [name: string, value: string] {
    if (!isObject(body)) throw new InvalidFilterError(path, `must be an object of one attribute name and its value; got ${describe(body)}`)
    const entries = Object.entries(body)
    const [entry] = entries
    if (entries.length !== 1 || entry === undefined) {
      throw new InvalidFilterError(path, `must name exactly one attribute; got ${entries.length === 0 ? 'none' : entries.map(([k]) => k).join(', ')}`)
    }
    const [name, value] = entry
    if (!ATTRIBUTE_NAME.test(name)) throw new InvalidFilterError(path, `${JSON.stringify(name)} is not an attribute name (lower-case letters and digits)`)
    if (typeof value !== 'string' || value === '') throw new InvalidFilterError(`${path}.${name}`, `must be a non-empty string; got ${describe(value)}`)
    return [name, value]
  }

  /**
   * An expression parsed once. One that could never pass is refused now: a call no
   * function takes, or a result that is an Integer or a String.
   */
  cesql (body: unknown, path: string): EventFilter {
    const { maxExpressionLength, maxDepth } = this.#limits
    if (typeof body !== 'string') throw new InvalidFilterError(path, `must be a CESQL expression (a string); got ${describe(body)}`)
    // characters are code points, as in the positions of a 400 (a UTF-16 length is never below it, so it bounds the work)
    const characters = body.length > maxExpressionLength ? [...body].length : body.length
    if (characters > maxExpressionLength) {
      throw new InvalidFilterError(path, `is ${characters} characters long, more than webhooks.filters.maxExpressionLength (${maxExpressionLength})`, 'too_long')
    }
    let expression
    try {
      expression = compileCesql(body, { maxDepth })
    } catch (err: unknown) {
      if (!(err instanceof CesqlSyntaxError)) throw err
      const bound = err.limit === 'depth' ? ' (webhooks.filters.maxDepth)' : ''
      throw new InvalidFilterError(path, `${err.detail}${bound} at ${where(err.position)}`, err.limit === 'depth' ? 'too_deep' : 'invalid', err.position)
    }
    const [missing] = expression.missingFunctions
    if (missing !== undefined) {
      throw new InvalidFilterError(path, `no function ${missing.name} takes ${missing.arity} argument${missing.arity === 1 ? '' : 's'} at ${where(missing.position)}`, 'invalid', missing.position)
    }
    if (expression.type === 'Integer' || expression.type === 'String') {
      throw new InvalidFilterError(path, `the expression's value is a${expression.type === 'Integer' ? 'n' : ''} ${expression.type}, never true: a filter needs a Boolean`)
    }
    const { evaluate } = expression
    return (event, onError) => {
      const outcome = evaluate(event)
      if (outcome.error === undefined) return outcome.value === true
      onError?.(outcome.error)
      return false
    }
  }
}

/** The attribute's value as a String (CESQL's casts: `10`, `true`), `undefined` when the event has none. */
function text (event: EventAttributes, name: string): string | undefined {
  const value = attributeOf(event, name)
  return value === undefined ? undefined : toText(value)
}

function isObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** A value as an error message shows it: its JSON, shortened. */
function describe (value: unknown): string {
  if (value === undefined) return 'nothing'
  const json = JSON.stringify(value)
  return json.length > 60 ? `${json.slice(0, 60)}…` : json
}
