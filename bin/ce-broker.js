#!/usr/bin/env node
/**
 * `ce-broker`, as `npx ce-broker` runs it. In a source checkout (src/ is there and
 * tsx, a dev dependency, is installed) the TypeScript runs through tsx, so the command
 * works right after `npm ci` and never runs a build older than the source; in the
 * published package (dist/ only) the build runs. Plain JavaScript: it must run before
 * anything is compiled.
 */
import { existsSync } from 'node:fs'

const source = new URL('../src/cli.ts', import.meta.url)
const built = new URL('../dist/src/cli.js', import.meta.url)

/** tsx's loader API, or `undefined` when tsx is not installed (`npm ci --omit=dev`, the published package). */
async function loadTsx () {
  try {
    return await import('tsx/esm/api')
  } catch (err) {
    if (err instanceof Error && 'code' in err && err.code === 'ERR_MODULE_NOT_FOUND') return undefined
    throw err
  }
}

const tsx = existsSync(source) ? await loadTsx() : undefined
if (tsx !== undefined) {
  tsx.register()
  await import(source.href)
} else if (existsSync(built)) {
  await import(built.href)
} else {
  process.stderr.write('ce-broker: nothing to run: dist/src/cli.js is not built (npm run build) and src/cli.ts needs tsx (npm ci)\n')
  process.exit(1)
}
