import { defer } from '../helpers/cleanup.js'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { cp, mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))

async function tempDir (t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ce-broker-launcher-'))
  defer(t, () => rm(dir, { recursive: true, force: true }))
  return dir
}

async function run (file: string, args: string[], cwd: string, env: Readonly<Record<string, string>> = {}): Promise<{ code: number, stdout: string, stderr: string }> {
  return await new Promise((resolve) => {
    execFile(file, args, { cwd, env: { ...process.env, ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr })
    })
  })
}

test('`npx ce-broker` works in a checkout right after `npm ci`, before any build', async (t) => {
  // a fresh clone after npm ci: everything but a build (dist/)
  const checkout = await tempDir(t)
  for (const name of await readdir(ROOT)) {
    if (name !== 'dist' && name !== '.git') await symlink(join(ROOT, name), join(checkout, name))
  }
  // npx keeps its own install of the local package: a fresh cache, as on a new machine, and no registry
  const env = { npm_config_cache: join(checkout, '.npm'), npm_config_offline: 'true', npm_config_update_notifier: 'false' }

  const help = await run('npx', ['ce-broker', '--help'], checkout, env)
  assert.equal(help.code, 0, help.stderr)
  assert.match(help.stdout, /^Usage: ce-broker/)
  const version = await run('npx', ['ce-broker', '--version'], checkout, env)
  assert.equal(version.code, 0, version.stderr)
  assert.match(version.stdout, /^\d+\.\d+\.\d+\n$/)
})

test('the launcher runs the build where there are no sources or no tsx (the published package, npm ci --omit=dev), and says what is missing', async (t) => {
  const pkg = await tempDir(t)
  await cp(join(ROOT, 'bin'), join(pkg, 'bin'), { recursive: true })
  await writeFile(join(pkg, 'package.json'), JSON.stringify({ name: 'ce-broker', type: 'module' }))
  await mkdir(join(pkg, 'dist', 'src'), { recursive: true })
  await writeFile(join(pkg, 'dist', 'src', 'cli.js'), 'process.stdout.write(`built ${process.argv.slice(2).join(" ")}\\n`)\n')
  const launcher = join(pkg, 'bin', 'ce-broker.js')

  assert.deepEqual(await run(process.execPath, [launcher, '--help'], pkg), { code: 0, stdout: 'built --help\n', stderr: '' })
  // sources without tsx (dev dependencies omitted): still the build
  await mkdir(join(pkg, 'src'))
  await writeFile(join(pkg, 'src', 'cli.ts'), 'throw new Error("the sources ran")\n')
  assert.deepEqual(await run(process.execPath, [launcher, '--version'], pkg), { code: 0, stdout: 'built --version\n', stderr: '' })

  await rm(join(pkg, 'dist'), { recursive: true })
  const nothing = await run(process.execPath, [launcher], pkg)
  assert.equal(nothing.code, 1)
  assert.match(nothing.stderr, /^ce-broker: nothing to run: dist\/src\/cli\.js is not built \(npm run build\) and src\/cli\.ts needs tsx \(npm ci\)/)
})
