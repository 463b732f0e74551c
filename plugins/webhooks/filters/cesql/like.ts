/**
 * The LIKE operator's patterns (§3.4.3): `%` is any run of characters, `_` one
 * character, `\%` and `\_` stand for themselves; every other character, a backslash
 * before anything else included, is itself (case-sensitive). Matched without regular
 * expressions, in at most (text length × pattern length) steps whatever the pattern,
 * and never more than `LIKE_STEPS`.
 */

const ONE = 1
const ANY = 2

/** A compiled pattern: code points to match, `ONE` (`_`) and `ANY` (`%`, runs folded into one). */
export type LikePattern = ReadonlyArray<string | typeof ONE | typeof ANY>

/** The pattern of a LIKE, compiled once when the expression is parsed. */
export function compileLike (pattern: string): LikePattern {
  const chars = Array.from(pattern)
  const out: Array<string | typeof ONE | typeof ANY> = []
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i] ?? ''
    const next = chars[i + 1]
    if (c === '\\' && (next === '%' || next === '_')) {
      out.push(next)
      i++
    } else if (c === '%') {
      if (out[out.length - 1] !== ANY) out.push(ANY)
    } else {
      out.push(c === '_' ? ONE : c)
    }
  }
  return out
}

/**
 * Steps one LIKE may take (characters compared, about 10 ms): past it the match is given
 * up as an evaluation error. The classic wildcard match takes up to text length ×
 * pattern length steps, and a pattern within `webhooks.filters.maxExpressionLength`
 * against a value of a few hundred KB would hold the event loop for seconds.
 */
export const LIKE_STEPS = 5_000_000

/**
 * Whether `text` matches `pattern` as a whole; `undefined` when that takes more than
 * `LIKE_STEPS`. Greedy, and on a mismatch goes back to the last `%` seen, which then
 * takes one more character: the classic wildcard match, which never needs to return to
 * an earlier `%`.
 */
export function matchLike (pattern: LikePattern, text: string): boolean | undefined {
  const chars = Array.from(text)
  let t = 0
  let p = 0
  let anyAt = -1
  let anyText = 0
  let steps = 0
  while (t < chars.length) {
    if (++steps > LIKE_STEPS) return undefined
    const token = pattern[p]
    if (token === ANY) {
      anyAt = p++
      anyText = t
    } else if (token !== undefined && (token === ONE || token === chars[t])) {
      p++
      t++
    } else if (anyAt >= 0) {
      p = anyAt + 1
      t = ++anyText
    } else {
      return false
    }
  }
  while (pattern[p] === ANY) p++
  return p === pattern.length
}
