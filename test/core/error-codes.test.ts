import assert from 'node:assert/strict'
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { ERROR_CODES, REJECT_REASONS } from '../../src/core/errors.js'
import { HTTP_ANSWERS } from '../../src/core/http/errors.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const README = readFileSync(join(ROOT, 'README.md'), 'utf8')

/** The rows of the table whose header row is at `header`, each as its cells. */
function rowsFrom (lines: readonly string[], header: number): string[][] {
  const rows: string[][] = []
  for (let i = header + 2; i < lines.length && (lines[i] ?? '').startsWith('|'); i++) {
    // a cell may hold an escaped pipe (`\|`): split on the others only
    rows.push((lines[i] ?? '').slice(1, -1).split(/(?<!\\)\|/).map((cell) => cell.trim().replaceAll('\\|', '|')))
  }
  return rows
}

/** The rows of the first table under `heading`. */
function tableUnder (heading: string): string[][] {
  const lines = README.split('\n')
  const at = lines.indexOf(heading)
  assert.notEqual(at, -1, `README has no "${heading}"`)
  return rowsFrom(lines, lines.findIndex((line, i) => i > at && line.startsWith('|')))
}

/** The rows of the table whose header row is `header`. */
function tableHeaded (header: string): string[][] {
  const lines = README.split('\n')
  const at = lines.indexOf(header)
  assert.notEqual(at, -1, `README has no table headed "${header}"`)
  return rowsFrom(lines, at)
}

/** Every `.ts` file under `dir`, recursively. */
function sources (dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts'))
    .map((entry) => join(entry.parentPath, entry.name))
}

test('the README\'s error table lists every code the code base defines, each with its meaning', () => {
  const rows = new Map(tableUnder('### Error codes').map(([code = '', meaning = '']) => [code.replaceAll('`', ''), meaning]))
  assert.deepEqual([...rows.keys()].sort(), [...ERROR_CODES.keys()].sort(), 'the codes of the README table and of src/core/errors/')
  for (const [code, meaning] of ERROR_CODES) assert.equal(rows.get(code), meaning, `the README's "raised when" of ${code}`)
})

test('every BRK_ code named in src/ and plugins/ is one the error module defines', () => {
  for (const file of [...sources('src'), ...sources('plugins')]) {
    for (const [code] of readFileSync(file, 'utf8').matchAll(/\bBRK_[A-Z][A-Z_]*[A-Z]\b/g)) {
      assert.ok(ERROR_CODES.has(code), `${file.slice(ROOT.length)} names ${code}, which no error class defines`)
    }
  }
})

test('the HTTP table answers every code, and every reason of a refused event as the README\'s reason table says', () => {
  for (const code of ERROR_CODES.keys()) {
    // a refused event answers by its reason, checked below
    if (code !== 'BRK_EVENT_REJECTED') assert.ok(HTTP_ANSWERS.has(code), `the HTTP table has no answer for ${code}`)
  }
  const reasons = new Map(tableHeaded('| reason | when | HTTP |')
    .map(([reason = '', , status = '']) => [reason.replaceAll('`', ''), Number(status)]))
  assert.deepEqual([...reasons.keys()].sort(), [...REJECT_REASONS].sort(), 'the reasons of the README table and of the error module')
  for (const reason of REJECT_REASONS) {
    assert.deepEqual(HTTP_ANSWERS.get(reason), { status: reasons.get(reason), code: reason }, `the HTTP answer of ${reason}`)
  }
})
