/**
 * Whether `value` is an RFC 3339 date-time (§5.6): `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`,
 * `T`/`Z` in either case, with real calendar dates (leap years included), hours 00–23,
 * minutes 00–59, seconds 00–60 (a leap second) and offsets up to ±23:59.
 *
 * Hand-written on character codes because every CloudEvent's `time` passes through it:
 * ajv-formats' date-time takes 0.8 µs per value here, this a small fraction of it.
 */
export function isRfc3339 (value: string): boolean {
  const length = value.length
  if (length < 20) return false
  const year = digits(value, 0, 4)
  const month = digits(value, 5, 2)
  const day = digits(value, 8, 2)
  const hour = digits(value, 11, 2)
  const minute = digits(value, 14, 2)
  const second = digits(value, 17, 2)
  if (year < 0 || month < 1 || month > 12 || day < 1 || day > daysIn(year, month)) return false
  if (hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 60) return false
  if (value[4] !== '-' || value[7] !== '-' || value[13] !== ':' || value[16] !== ':') return false
  const t = value[10]
  if (t !== 'T' && t !== 't') return false

  let at = 19
  if (value[at] === '.') {
    at++
    const start = at
    while (at < length && isDigit(value.charCodeAt(at))) at++
    if (at === start) return false
  }
  const zone = value[at]
  if (zone === 'Z' || zone === 'z') return at + 1 === length
  if (zone !== '+' && zone !== '-') return false
  if (at + 6 !== length || value[at + 3] !== ':') return false
  const offsetHours = digits(value, at + 1, 2)
  const offsetMinutes = digits(value, at + 4, 2)
  return offsetHours >= 0 && offsetHours <= 23 && offsetMinutes >= 0 && offsetMinutes <= 59
}

/** Whether `value` is an RFC 3339 full-date, `YYYY-MM-DD`, naming a real calendar day. */
export function isRfc3339Date (value: string): boolean {
  if (value.length !== 10 || value[4] !== '-' || value[7] !== '-') return false
  const year = digits(value, 0, 4)
  const month = digits(value, 5, 2)
  const day = digits(value, 8, 2)
  return year >= 0 && month >= 1 && month <= 12 && day >= 1 && day <= daysIn(year, month)
}

/** The number written by `count` decimal digits at `from`, or -1 when any is not a digit. */
function digits (value: string, from: number, count: number): number {
  let n = 0
  for (let i = from; i < from + count; i++) {
    const code = value.charCodeAt(i)
    if (!isDigit(code)) return -1
    n = n * 10 + code - 48
  }
  return n
}

function isDigit (code: number): boolean {
  return code >= 48 && code <= 57
}

function daysIn (year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31
}
