/**
 * `ce-broker types`: each registered type's data type, from a schema folder or a running
 * broker's registry, written where the client library's generics take it.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { fileURLToPath } from 'node:url'
import { runTypes } from '../../src/types-command.js'
import { createPublisher } from '../../client/index.js'
import { httpUrl, mqttUrl, startBroker } from '../helpers/broker.js'
import { defer } from '../helpers/cleanup.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
/** What `ce-broker types --out examples/events.ts --from schemas` writes for the bundled schemas: the examples and the type test compile against it. */
const FIXTURE = join(ROOT, 'examples/events.ts')

async function tempDir (t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ce-broker-types-'))
  defer(t, () => rm(dir, { recursive: true, force: true }))
  return dir
}

async function types (args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  let stdout = ''
  let stderr = ''
  const code = await runTypes(args, (line) => { stdout += `${line}\n` }, (line) => { stderr += `${line}\n` }, {})
  return { code, stdout, stderr }
}

test('from the bundled folder, as the command line runs it: the committed fixture is what it writes', async (t) => {
  const out = join(await tempDir(t), 'events.ts')
  const { code, stdout } = await new Promise<{ code: number, stdout: string }>((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'types', '--out', out, '--from', 'schemas'], { cwd: ROOT, timeout: 60_000 }, (err, stdout) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout })
    })
  })
  assert.equal(code, 0)
  assert.match(stdout, /^14 types written to /)
  assert.equal(await readFile(out, 'utf8'), await readFile(FIXTURE, 'utf8'), 'examples/events.ts is stale: run `ce-broker types --out examples/events.ts --from schemas`')
})

test('from a running broker: its latest versions, each named by its version URL; a .d.ts holds types only', async (t) => {
  const broker = await startBroker(t)
  const dir = await tempDir(t)
  const reserved = JSON.parse(await readFile(join(ROOT, 'schemas/albergue.v1.booking.reserved.json'), 'utf8')) as Record<string, unknown>
  // a compatible version 2: an optional field more
  const v2 = { ...reserved, properties: { ...(reserved.properties as object), channel: { type: 'string', enum: ['web', 'phone'] } } }
  const registered = await fetch(httpUrl(broker, '/api/schemas/albergue.v1.booking.reserved/versions'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(v2) })
  assert.equal(registered.status, 201)

  const ts = join(dir, 'events.ts')
  assert.equal((await types(['--out', ts, '--from', httpUrl(broker)])).code, 0)
  const text = await readFile(ts, 'utf8')
  assert.match(text, /channel\?: "web" \| "phone";/)
  assert.match(text, new RegExp(`"albergue.v1.booking.reserved": "${httpUrl(broker, '/api/schemas/albergue.v1.booking.reserved/versions/2').replaceAll('.', '\\.')}"`))
  assert.match(text, new RegExp(`"albergue.v1.booking.cancelled": "${httpUrl(broker, '/api/schemas/albergue.v1.booking.cancelled/versions/1').replaceAll('.', '\\.')}"`))

  const dts = join(dir, 'events.d.ts')
  assert.equal((await types(['--out', dts, '--from', httpUrl(broker)])).code, 0)
  const declarations = await readFile(dts, 'utf8')
  assert.match(declarations, /export interface Events \{/)
  assert.doesNotMatch(declarations, /dataschemas/, 'a .d.ts holds no values')
})

test('bad input exits 2 naming what is wrong', async (t) => {
  const dir = await tempDir(t)
  assert.match((await types(['--from', 'schemas'])).stderr, /give --out/)
  const unreachable = await types(['--out', join(dir, 'x.ts'), '--from', 'http://127.0.0.1:9'])
  assert.deepEqual([unreachable.code, /did not answer/.test(unreachable.stderr)], [2, true])
  await writeFile(join(dir, 'acme.v1.thing.json'), JSON.stringify({ $schema: 'https://json-schema.org/draft/2020-12/schema', type: 'object', properties: { a: { $ref: 'missing.json#/$defs/a' } } }))
  const dangling = await types(['--out', join(dir, 'x.ts'), '--from', dir])
  assert.equal(dangling.code, 2)
  assert.match(dangling.stderr, /missing\.json/)
})

test('a folder schema whose $id is relative names no dataschema: the broker refuses a relative one, and would refuse every event of the type', async (t) => {
  const dir = await tempDir(t)
  const folder = join(dir, 'schemas')
  await mkdir(folder)
  const schema = (id: string): string => JSON.stringify({ $schema: 'https://json-schema.org/draft/2020-12/schema', $id: id, type: 'object', required: ['sku'], properties: { sku: { type: 'string' } } })
  await writeFile(join(folder, 'acme.v1.item.added.json'), schema('item-added.json'))
  await writeFile(join(folder, 'acme.v1.item.removed.json'), schema('https://acme.example/schemas/item-removed.json'))
  const out = join(dir, 'events.ts')
  assert.equal((await types(['--out', out, '--from', folder])).code, 0)
  const written = /export const dataschemas[^=]*= (\{[^]*\})\n/.exec(await readFile(out, 'utf8'))?.[1]
  const dataschemas = JSON.parse(written ?? 'null') as Record<string, string>
  assert.deepEqual(dataschemas, { 'acme.v1.item.removed': 'https://acme.example/schemas/item-removed.json' })

  const broker = await startBroker(t, { schemas: { dir: folder }, validation: { rules: [{ match: 'acme/#' }] } })
  const publisher = await createPublisher({ url: mqttUrl(broker), clientId: 'acme-items', source: '/acme/items', dataschemas })
  defer(t, () => publisher.close())
  assert.equal((await publisher.publish('acme.v1.item.added', { sku: 'a-1' })).duplicate, false)
  assert.equal((await publisher.publish('acme.v1.item.removed', { sku: 'a-1' })).duplicate, false)
})
