import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { builtinConfigTable } from '../../src/config.js'

const HEADER = '| key | default | environment | flag | meaning |'

/** The README's table: from its header to the first line that is not a row. */
function readmeTable (): string {
  const lines = readFileSync(new URL('../../README.md', import.meta.url), 'utf8').split('\n')
  const start = lines.indexOf(HEADER)
  assert.ok(start >= 0, 'the README has a configuration table')
  const end = lines.findIndex((line, index) => index > start && !line.startsWith('|'))
  return lines.slice(start, end === -1 ? undefined : end).join('\n')
}

test('the README\'s configuration table is the one the config schemas give (scripts/config-table.ts prints it)', () => {
  assert.equal(readmeTable(), builtinConfigTable())
})
