import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { fileURLToPath } from 'node:url'
import { runSchemasCheck } from '../../src/schemas-check.js'
import { httpUrl, startBroker } from '../helpers/broker.js'
import { defer } from '../helpers/cleanup.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const BUNDLED = join(ROOT, 'schemas')
const RESERVED = 'albergue.v1.booking.reserved.json'

/** `ce-broker schemas check …` in this process: what the command runs, its lines collected. */
async function check (args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  let stdout = ''
  let stderr = ''
  const code = await runSchemasCheck(args, (line) => { stdout += `${line}\n` }, (line) => { stderr += `${line}\n` }, {})
  return { code, stdout, stderr }
}

/** `ce-broker schemas check …` from source, as `npx ce-broker` runs it. */
async function spawned (args: string[], env: Readonly<Record<string, string>> = {}): Promise<{ code: number, stdout: string, stderr: string }> {
  return await new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'schemas', 'check', ...args], { cwd: ROOT, env: { ...process.env, ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1
      resolve({ code, stdout, stderr })
    })
  })
}

/** A copy of the bundled schemas with booking.reserved changed by `edit`. */
async function edited (t: TestContext, edit: (schema: { required: string[], properties: Record<string, Record<string, unknown>> }) => void): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ce-broker-check-'))
  defer(t, () => rm(dir, { recursive: true, force: true }))
  await cp(BUNDLED, dir, { recursive: true })
  const schema: { required: string[], properties: Record<string, Record<string, unknown>> } = JSON.parse(await readFile(join(dir, RESERVED), 'utf8'))
  edit(schema)
  await writeFile(join(dir, RESERVED), JSON.stringify(schema, null, 2))
  return dir
}

test('schemas check against a folder: 0 when compatible, 1 with each breaking change and its path, 2 on bad input', async (t) => {
  const same = await check(['--against', BUNDLED, BUNDLED])
  assert.equal(same.code, 0, same.stderr)
  assert.match(same.stdout, /14 types checked, 0 new; no breaking change/)

  const looser = await edited(t, (schema) => { schema.properties.nights = { ...schema.properties.nights, maximum: 60 } })
  assert.equal((await check(['--against', BUNDLED, looser])).code, 0)

  const stricter = await edited(t, (schema) => {
    schema.required.push('beds')
    schema.properties.nights = { ...schema.properties.nights, minimum: 2 }
  })
  const broken = await check(['--against', BUNDLED, stricter])
  assert.equal(broken.code, 1, broken.stdout + broken.stderr)
  assert.match(broken.stdout, /albergue\.v1\.booking\.reserved \(albergue\.v1\.booking\.reserved\.json\): not BACKWARD compatible/)
  assert.match(broken.stdout, /\/properties\/nights\/minimum: /)
  assert.match(broken.stdout, /beds/)
  assert.equal((await check(['--against', BUNDLED, '--compatibility', 'NONE', stricter])).code, 0, 'NONE checks nothing')
  assert.equal((await check(['--against', stricter, BUNDLED])).code, 0, 'the looser schema is BACKWARD compatible with the stricter one')
  assert.equal((await check(['--against', stricter, '--compatibility', 'FORWARD', BUNDLED])).code, 1, 'but not FORWARD')

  const missing = await check(['--against', BUNDLED, join(tmpdir(), 'no-such-ce-broker-folder')])
  assert.equal(missing.code, 2)
  assert.match(missing.stderr, /cannot be read as a schema folder/)
  assert.equal((await check(['--against', BUNDLED, '--compatibility', 'SIDEWAYS', BUNDLED])).code, 2)
  assert.equal((await check([BUNDLED])).code, 2, 'no --against')
  const invalid = await edited(t, (schema) => { schema.properties.nights = { type: 'integr' } })
  assert.equal((await check(['--against', BUNDLED, invalid])).code, 2, 'a schema that does not compile')
})

test('the command\'s exit status is the check\'s: 1 for a breaking change, 2 for bad input', async (t) => {
  const stricter = await edited(t, (schema) => { schema.required.push('beds') })
  const broken = await spawned(['--against', BUNDLED, stricter])
  assert.equal(broken.code, 1, broken.stderr)
  assert.match(broken.stdout, /not BACKWARD compatible/)
  const bad = await spawned(['--against', BUNDLED])
  assert.equal(bad.code, 2)
  assert.match(bad.stderr, /^ce-broker schemas check: give --against and one folder/)
})

test('schemas check against a running broker: each type under the rule the broker holds for it', async (t) => {
  const broker = await startBroker(t)
  const url = httpUrl(broker)
  const stricter = await edited(t, (schema) => { schema.required.push('beds') })
  const broken = await check(['--against', url, stricter])
  assert.equal(broken.code, 1, broken.stdout + broken.stderr)
  assert.match(broken.stdout, /not BACKWARD compatible/)

  const put = await fetch(httpUrl(broker, '/api/schemas/albergue.v1.booking.reserved/config'), { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ compatibility: 'NONE' }) })
  assert.equal(put.status, 200)
  assert.equal((await check(['--against', url, stricter])).code, 0, 'the broker says NONE for this type')

  const gone = await check(['--against', 'http://127.0.0.1:9/', BUNDLED])
  assert.equal(gone.code, 2)
  assert.match(gone.stderr, /did not answer/)
})
