/** Checks on MQTT topic names and filters (MQTT 3.1.1 §4.7). */

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
