/**
 * CESQL's values (CloudEvents SQL Expression Language 1.0, §3.1 and §3.7): the three
 * primitive types, their zero values, the casts between them, and an event's
 * attributes as CESQL sees them (§3.2). Pure: no I/O, no state.
 */

/** The three primitive types (§3.1). */
export type CesqlType = 'Boolean' | 'Integer' | 'String'

/** A value of one of them: an Integer is a JS number within the 32-bit signed range. */
export type CesqlValue = boolean | number | string

/** The Integer range (§3.1): 32-bit signed. */
export const INT_MIN = -2_147_483_648
/** The Integer range (§3.1): 32-bit signed. */
export const INT_MAX = 2_147_483_647

/** The zero value of each type (§3.1): what an operator returns along with an error. */
export const ZERO: Readonly<Record<CesqlType, CesqlValue>> = { Boolean: false, Integer: 0, String: '' }

/** The type of a value. */
export function typeOf (value: CesqlValue): CesqlType {
  return typeof value === 'boolean' ? 'Boolean' : typeof value === 'number' ? 'Integer' : 'String'
}

/** Whether `n` is an Integer CESQL can hold. */
export function isInt32 (n: number): boolean {
  return Number.isInteger(n) && n >= INT_MIN && n <= INT_MAX
}

/** `n` with `-0` made `0`, which JS arithmetic yields (`-4 % 2`) and CESQL has not. */
export function integer (n: number): number {
  return n === 0 ? 0 : n
}

const DECIMAL = /^[+-]?[0-9]+$/

/** String → Integer: a base-10 32-bit integer with an optional sign, else `undefined`. */
export function toInteger (value: CesqlValue): number | undefined {
  if (typeof value === 'number') return value
  if (typeof value === 'boolean') return value ? 1 : 0
  if (!DECIMAL.test(value)) return undefined
  const n = Number(value)
  return isInt32(n) ? integer(n) : undefined
}

/** String → Boolean: `true` or `false` in any case, else `undefined`; Integer → Boolean: 0 is false. */
export function toBoolean (value: CesqlValue): boolean | undefined {
  if (typeof value === 'boolean') return value
  if (typeof value === 'number') return value !== 0
  const lower = value.toLowerCase()
  return lower === 'true' ? true : lower === 'false' ? false : undefined
}

/** Every value has a String form: base 10 for an Integer, `true`/`false` for a Boolean. */
export function toText (value: CesqlValue): string {
  return typeof value === 'string' ? value : String(value)
}

/** `value` as `target`, or `undefined` when the cast fails (§3.7). */
export function castTo (value: CesqlValue, target: CesqlType): CesqlValue | undefined {
  switch (target) {
    case 'Boolean': return toBoolean(value)
    case 'Integer': return toInteger(value)
    case 'String': return toText(value)
  }
}

/** A value as error messages show it: strings quoted, shortened past 40 characters. */
export function show (value: CesqlValue): string {
  if (typeof value !== 'string') return String(value)
  return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)
}

/**
 * A structured CloudEvent as published (a parsed JSON object): its context attributes
 * and extensions are its top-level keys other than `data` and `data_base64`.
 */
export type EventAttributes = Readonly<Record<string, unknown>>

/**
 * The attribute `name` of `event` as a CESQL value, `undefined` when the event has none
 * (or `null`). Values of no CESQL type are Strings (§3.2): a number that is not a 32-bit
 * integer in its JS form (`2.5`, `1e+21`), an object or array as JSON (CloudEvents
 * extensions are scalars, but a topic no validation rule checks lets anything through).
 */
export function attributeOf (event: EventAttributes, name: string): CesqlValue | undefined {
  if (name === 'data' || name === 'data_base64' || !Object.hasOwn(event, name)) return undefined
  const value = event[name]
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value
    case 'number':
      return isInt32(value) ? integer(value) : String(value)
    case 'object':
      return value === null ? undefined : JSON.stringify(value)
    default:
      return undefined
  }
}
