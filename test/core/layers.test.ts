import assert from 'node:assert/strict'
import { readFileSync, readdirSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')

/** Every `.ts` file under `folder`, as paths relative to the repository. */
function sources (folder: string): string[] {
  const out: string[] = []
  for (const entry of readdirSync(join(ROOT, folder), { withFileTypes: true })) {
    const path = join(folder, entry.name)
    if (entry.isDirectory()) out.push(...sources(path))
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) out.push(path)
  }
  return out
}

/**
 * The files of this repository `file` imports (static, type-only and dynamic imports
 * with a literal specifier), as paths relative to the repository; packages are left out.
 */
function importsOf (file: string): string[] {
  const text = readFileSync(join(ROOT, file), 'utf8')
  const specifiers = [
    ...text.matchAll(/^\s*(?:import|export)\b[^'"`]*?\bfrom\s+'([^']+)'/gm),
    ...text.matchAll(/\bimport\(\s*'([^']+)'\s*\)/g)
  ].map((match) => match[1] ?? '')
  return specifiers
    .filter((specifier) => specifier.startsWith('.'))
    .map((specifier) => relative(ROOT, resolve(ROOT, dirname(file), specifier)).replace(/\.js$/, '.ts'))
}

const CODE = [...sources('src'), ...sources('plugins'), ...sources('client')]

test('nothing under src/core/ imports a file outside it: the core knows no plugin, no preset, no package entry', () => {
  const crossings = sources('src/core').flatMap((file) => importsOf(file)
    .filter((target) => !target.startsWith('src/core/'))
    .map((target) => `${file} imports ${target}`))
  assert.deepEqual(crossings, [])
})

test('plugins import the core through src/core/index.ts only, never the package entry or the preset', () => {
  const crossings = sources('plugins').flatMap((file) => importsOf(file)
    .filter((target) => target.startsWith('src/') && target !== 'src/core/index.ts')
    .map((target) => `${file} imports ${target}`))
  assert.deepEqual(crossings, [])
})

test('the client library (ce-broker/client) imports nothing of the broker: no server code comes with it', () => {
  const crossings = sources('client').flatMap((file) => importsOf(file)
    .filter((target) => !target.startsWith('client/'))
    .map((target) => `${file} imports ${target}`))
  assert.deepEqual(crossings, [])
})

test('the import graph of src/, plugins/ and client/ has no circle', () => {
  const graph = new Map(CODE.map((file) => [file, importsOf(file).filter((target) => CODE.includes(target))]))
  const circles: string[] = []
  const state = new Map<string, 'open' | 'done'>()
  const visit = (file: string, path: readonly string[]): void => {
    if (state.get(file) === 'done') return
    if (state.get(file) === 'open') {
      circles.push([...path.slice(path.indexOf(file)), file].join(' -> '))
      return
    }
    state.set(file, 'open')
    for (const target of graph.get(file) ?? []) visit(target, [...path, file])
    state.set(file, 'done')
  }
  for (const file of CODE) visit(file, [])
  assert.deepEqual(circles, [])
})
