/** Checks on MQTT topic names and filters (MQTT 3.1.1 §4.7). */
import { isReserved } from './reserved-topics.js'

/** Why `filter` is not a valid MQTT topic filter, or `undefined` when it is. */
export function topicFilterProblem (filter: string): string | undefined {
  if (filter.length === 0) return 'must not be empty'
  if (filter.includes('\u0000')) return 'must not contain U+0000'
  const levels = filter.split('/')
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i] ?? ''
    if (level.includes('#') && (level !== '#' || i !== levels.length - 1)) return '"#" must be a whole level and the last one'
    if (level.includes('+') && level !== '+') return '"+" must be a whole level'
  }
  return undefined
}

/**
 * A matcher for one MQTT topic filter (`+` one level, `#` this level and all below,
 * `sport/#` matching `sport` too). Filters starting with a wildcard never match `$` topics [MQTT-4.7.2-1].
 */
export function compileFilter (filter: string): (topic: string) => boolean {
  const levels = filter.split('/')
  const wildcardFirst = filter.startsWith('+') || filter.startsWith('#')
  if (!filter.includes('+') && !filter.includes('#')) return (topic) => topic === filter
  // walks the topic in place, level by level, without splitting it: this runs on every publish
  return function matchesFilter (topic: string): boolean {
    if (wildcardFirst && isReserved(topic)) return false
    let start = 0
    for (let i = 0; i < levels.length; i++) {
      const level = levels[i]
      if (level === '#') return true
      if (start > topic.length) return false
      let end = topic.indexOf('/', start)
      if (end === -1) end = topic.length
      if (level !== '+' && (end - start !== level?.length || !topic.startsWith(level, start))) return false
      start = end + 1
    }
    return start === topic.length + 1
  }
}
