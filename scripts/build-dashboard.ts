/**
 * Build the dashboard: `dashboard/app.ts` and what it imports (the mqtt package's
 * browser build, uPlot, the styles) bundled by esbuild into `dist/dashboard/app.js` and
 * `app.css`, beside a copy of `index.html`. `npm run build` runs it; the dashboard
 * tests call `buildDashboard()` before they start a broker.
 */
import { copyFile, mkdir } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'

/** The package root: the nearest folder up from this file with a package.json. */
function packageRoot (): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir)
    if (parent === dir) throw new Error('no package.json above the dashboard build script')
    dir = parent
  }
  return dir
}

/** Bundle the dashboard into `<root>/dist/dashboard/`; returns that folder. */
export async function buildDashboard (root = packageRoot()): Promise<string> {
  const outdir = join(root, 'dist', 'dashboard')
  await mkdir(outdir, { recursive: true })
  await build({
    entryPoints: [join(root, 'dashboard', 'app.ts')],
    entryNames: 'app',
    outdir,
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'browser',
    target: ['es2022'],
    tsconfig: join(root, 'dashboard', 'tsconfig.json'),
    legalComments: 'eof',
    logLevel: 'warning'
  })
  await copyFile(join(root, 'dashboard', 'index.html'), join(outdir, 'index.html'))
  return outdir
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const outdir = await buildDashboard()
  console.log(`dashboard built into ${outdir}`)
}
