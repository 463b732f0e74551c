/**
 * Review of the live schema registry (46951b8..ede66c1, then the fixes in 1d7ab89): one
 * test per defect found, each failing for the reason its name gives. The first eight
 * failed on ede66c1 and pass since 1d7ab89; the image test failed on both; the tests
 * after the "found in the fixes" line fail on 1d7ab89.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { fileURLToPath } from 'node:url'
import type { Broker, BrokerInput } from '../../src/index.js'
import { runSchemasCheck } from '../../src/schemas-check.js'
import { connect, httpUrl, mqttUrl, nextMessage, sample, startBroker } from '../helpers/broker.js'
import { defer } from '../helpers/cleanup.js'

const TOPIC = 'acme/v1/temp'
const TYPE = 'acme.v1.temp'
const RULES = [{ match: 'acme/#', cloudevents: true, schema: 'required' as const, onInvalid: 'dlq' as const }]
const BUNDLED = fileURLToPath(new URL('../../schemas/', import.meta.url))

async function tempDir (t: TestContext, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  defer(t, () => rm(dir, { recursive: true, force: true }))
  return dir
}

/** A schema folder holding `files` (name → schema). */
async function schemaDir (t: TestContext, files: Record<string, unknown>): Promise<string> {
  const dir = await tempDir(t, 'ce-broker-review-schemas-')
  for (const [name, schema] of Object.entries(files)) await writeFile(join(dir, name), JSON.stringify(schema))
  return dir
}

/** A broker validating `acme/#` against the schemas of `dir`. */
async function acmeBroker (t: TestContext, dir: string, extra: { dataDir?: string, workers?: number } = {}): Promise<Broker> {
  const input: BrokerInput = {
    schemas: { dir, ...(extra.dataDir === undefined ? {} : { dataDir: extra.dataDir }) },
    validation: { workers: extra.workers ?? 0, rules: RULES }
  }
  return await startBroker(t, input)
}

async function call (url: string, method: string, body?: unknown): Promise<{ status: number, body: unknown }> {
  const res = await fetch(url, body === undefined ? { method } : { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const text = await res.text()
  let parsed: unknown = text
  try { parsed = text === '' ? undefined : JSON.parse(text) } catch { /* kept as text */ }
  return { status: res.status, body: parsed }
}

function at (value: unknown, ...path: Array<string | number>): unknown {
  let here = value
  for (const key of path) here = typeof here === 'object' && here !== null ? Reflect.get(here, key) : undefined
  return here
}

function event (type: string, data: unknown, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ specversion: '1.0', id: `e-${Math.random()}`, source: '/acme/sensor', type, data, ...extra })
}

const TEMP_V1 = { type: 'object', properties: { celsius: { type: 'number', minimum: -50 } }, required: ['celsius'] }

test('two types whose schemas share an $id: the validation worker keeps running and the broker starts again', async (t) => {
  const dataDir = await tempDir(t, 'ce-broker-review-data-')
  const dir = await schemaDir(t, { 'acme.v1.temp.json': TEMP_V1 })
  const first = await acmeBroker(t, dir, { dataDir, workers: 1 })
  // a v2 type made by copying v1's file and forgetting to change its $id: both register (201)
  const shared = 'https://acme.example/schemas/reading.json'
  assert.equal((await call(httpUrl(first, '/api/schemas/acme.v1.reading/versions'), 'POST', { $id: shared, type: 'object' })).status, 201)
  assert.equal((await call(httpUrl(first, '/api/schemas/acme.v2.reading/versions'), 'POST', { $id: shared, type: 'object', required: ['celsius'] })).status, 201)

  // the worker got the change: an event still goes through it, and it is still there
  const subscriber = await connect(t, mqttUrl(first))
  await subscriber.subscribeAsync([TOPIC, '$DLQ/#'])
  const publisher = await connect(t, mqttUrl(first))
  await publisher.publishAsync(TOPIC, event(TYPE, { celsius: 20 }), { qos: 1 })
  assert.equal((await nextMessage(subscriber)).topic, TOPIC)
  const metrics = await (await fetch(httpUrl(first, '/metrics'))).text()
  assert.equal(sample(metrics, 'ce_broker_validation_workers'), 1, 'the worker died applying acme.v2.reading version 1 (its compile key collides with acme.v1.reading version 1)')
  await first.close()

  // the store holds both versions: the next start must read them back
  const second = await acmeBroker(t, dir, { dataDir, workers: 0 })
  const listed = at((await call(httpUrl(second, '/api/schemas'), 'GET')).body, 'schemas')
  assert.ok(Array.isArray(listed) && listed.some((s) => at(s, 'type') === 'acme.v2.reading'))
})

test('a type in shadow mode does not switch off the enforcement of another type whose events name it in dataschema', async (t) => {
  const dir = await schemaDir(t, { 'acme.v1.temp.json': TEMP_V1 })
  const broker = await acmeBroker(t, dir)
  // the documented roll-out: a stricter schema as a new type, in shadow mode first
  const stricter = { type: 'object', properties: { celsius: { type: 'number', minimum: -50, maximum: 60 } }, required: ['celsius'] }
  assert.equal((await call(httpUrl(broker, '/api/schemas/acme.v2.temp/versions'), 'POST', stricter)).status, 201)
  assert.equal((await call(httpUrl(broker, '/api/schemas/acme.v2.temp/config'), 'PUT', { mode: 'shadow' })).status, 200)

  const subscriber = await connect(t, mqttUrl(broker))
  await subscriber.subscribeAsync([TOPIC, '$DLQ/#'])
  const publisher = await connect(t, mqttUrl(broker))
  await publisher.publishAsync(TOPIC, event(TYPE, { celsius: 'hot' }), { qos: 1 })
  assert.equal((await nextMessage(subscriber)).topic, `$DLQ/${TOPIC}`, 'acme.v1.temp is enforced')
  // the same invalid event, naming the stricter (shadow) type's version: acme.v1.temp is still enforced
  await publisher.publishAsync(TOPIC, event(TYPE, { celsius: 'hot' }, { dataschema: 'https://registry.example/api/schemas/acme.v2.temp/versions/1' }), { qos: 1 })
  assert.equal((await nextMessage(subscriber)).topic, `$DLQ/${TOPIC}`, 'delivered: the shadow mode of acme.v2.temp decided for an acme.v1.temp event')
})

test('a schema that $refs its own $id, or another type\'s file by its $id, compiles as it did before the registry', async (t) => {
  const tree = { $id: 'https://acme.example/tree.json', type: 'object', properties: { kids: { type: 'array', items: { $ref: 'https://acme.example/tree.json' } } } }
  const a = { $id: 'https://acme.example/a.json', type: 'object', properties: { n: { type: 'integer' } } }
  const b = { $id: 'https://acme.example/b.json', type: 'object', properties: { n: { $ref: 'a.json#/properties/n' } } }
  for (const files of [{ 'acme.v1.tree.json': tree }, { 'acme.v1.a.json': a, 'acme.v1.b.json': b }]) {
    const dir = await schemaDir(t, files)
    // both folders start on 46951b8 (every file compiled under its own $id); here: "can't resolve reference"
    const broker = await acmeBroker(t, dir)
    await broker.close()
  }
})

test('a registration the file store fails to write is not kept: the next one is version 2 and every stored version is in force', async (t) => {
  const dataDir = await tempDir(t, 'ce-broker-review-data-')
  const dir = await schemaDir(t, { 'acme.v1.temp.json': { type: 'object', properties: { celsius: { type: 'number', maximum: 10 } } } })
  const broker = await acmeBroker(t, dir, { dataDir })
  const url = httpUrl(broker, `/api/schemas/${TYPE}/versions`)
  // the registry file's place taken by a non-empty folder: the rename of the next write fails (even as root)
  const file = join(dataDir, 'schema-registry.json')
  await rm(file)
  await mkdir(join(file, 'in-the-way'), { recursive: true })
  const failed = await call(url, 'POST', { type: 'object', properties: { celsius: { type: 'number', maximum: 20 } } })
  assert.equal(failed.status, 500)
  await rm(file, { recursive: true })

  const next = await call(url, 'POST', { type: 'object', properties: { celsius: { type: 'number', maximum: 30 } } })
  assert.deepEqual(next, { status: 201, body: { type: TYPE, version: 2 } }, 'the failed registration was kept in the store\'s memory (version 2, never compiled nor shown) and numbered this one 3')
  const versions = at((await call(url, 'GET')).body, 'versions')
  assert.deepEqual(Array.isArray(versions) ? versions.map((v) => at(v, 'version')) : versions, [1, 2])
})

test('two embedded brokers on one data folder: the second refuses the folder, or neither loses the other\'s registrations', async (t) => {
  const dataDir = await tempDir(t, 'ce-broker-review-data-')
  const dir = await schemaDir(t, { 'acme.v1.temp.json': TEMP_V1 })
  const a = await acmeBroker(t, dir, { dataDir })
  let b: Broker
  try {
    b = await acmeBroker(t, dir, { dataDir })
  } catch {
    return // refused: the folder is in use (a lock), which is a fix
  }
  const statuses = await Promise.all([
    call(httpUrl(a, '/api/schemas/acme.v1.one/versions'), 'POST', { type: 'object' }),
    call(httpUrl(b, '/api/schemas/acme.v1.two/versions'), 'POST', { type: 'object' }),
    call(httpUrl(a, '/api/schemas/acme.v1.three/versions'), 'POST', { type: 'object' }),
    call(httpUrl(b, '/api/schemas/acme.v1.four/versions'), 'POST', { type: 'object' })
  ])
  assert.deepEqual(statuses.map((s) => s.status), [201, 201, 201, 201])
  await a.close()
  await b.close()
  const c = await acmeBroker(t, dir, { dataDir })
  const listed = at((await call(httpUrl(c, '/api/schemas'), 'GET')).body, 'schemas')
  const types = Array.isArray(listed) ? listed.map((s) => at(s, 'type')) : []
  assert.deepEqual(['acme.v1.one', 'acme.v1.two', 'acme.v1.three', 'acme.v1.four'].filter((type) => !types.includes(type)), [], 'registrations answered 201 and lost after a restart')
})

/** A schema of `depth` levels of `allOf: [$ref next, $ref next]`: small, and 2^depth conjuncts once every $ref is followed. */
function diamond (depth: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const defs: Record<string, unknown> = {}
  for (let i = 0; i < depth; i++) defs[`d${i}`] = { allOf: [{ $ref: `#/$defs/d${i + 1}` }, { $ref: `#/$defs/d${i + 1}` }] }
  defs[`d${depth}`] = { type: 'object', properties: { celsius: { type: 'number' } } }
  return { $defs: defs, $ref: '#/$defs/d0', ...extra }
}

test('a dry run with a deep $ref/allOf diamond is answered "too complex" (the checker\'s step budget holds), not 500', async (t) => {
  const dir = await schemaDir(t, { 'acme.v1.temp.json': TEMP_V1 })
  const broker = await acmeBroker(t, dir)
  // 1.5 KiB of schema; the checker expands it into 2^20 conjuncts before MAX_STEPS is ever consulted
  const dry = await call(httpUrl(broker, `/api/schemas/${TYPE}/compatibility`), 'POST', diamond(20))
  assert.notEqual(dry.status, 500, `the checker threw: ${JSON.stringify(dry.body)}`)
  if (dry.status === 200) assert.equal(at(dry.body, 'compatible'), false)
  // and the broker still serves
  assert.equal((await call(httpUrl(broker, '/api/schemas'), 'GET')).status, 200)
})

test('under FORWARD, a dataschema naming an older, laxer version of its type does not get round the latest', async (t) => {
  const dir = await schemaDir(t, { 'acme.v1.temp.json': TEMP_V1 })
  const broker = await acmeBroker(t, dir)
  // tightening a type needs FORWARD (or NONE): version 2 caps celsius at 60
  assert.equal((await call(httpUrl(broker, `/api/schemas/${TYPE}/config`), 'PUT', { compatibility: 'FORWARD' })).status, 200)
  const tighter = { type: 'object', properties: { celsius: { type: 'number', minimum: -50, maximum: 60 } }, required: ['celsius'] }
  assert.deepEqual((await call(httpUrl(broker, `/api/schemas/${TYPE}/versions`), 'POST', tighter)).body, { type: TYPE, version: 2 })

  const subscriber = await connect(t, mqttUrl(broker))
  await subscriber.subscribeAsync([TOPIC, '$DLQ/#'])
  const publisher = await connect(t, mqttUrl(broker))
  await publisher.publishAsync(TOPIC, event(TYPE, { celsius: 500 }), { qos: 1 })
  assert.equal((await nextMessage(subscriber)).topic, `$DLQ/${TOPIC}`, 'version 2 refuses 500')
  await publisher.publishAsync(TOPIC, event(TYPE, { celsius: 500 }, { dataschema: `https://registry.example/api/schemas/${TYPE}/versions/1` }), { qos: 1 })
  assert.equal((await nextMessage(subscriber)).topic, `$DLQ/${TOPIC}`, 'delivered: naming version 1 picks a schema laxer than the type\'s latest')
})

test('schemas check: a folder whose file is a registered (older) version of its type is no breaking change', async (t) => {
  const broker = await startBroker(t, { validation: { workers: 0 } })
  const reserved = JSON.parse(await readFile(join(BUNDLED, 'albergue.v1.booking.reserved.json'), 'utf8')) as { properties: Record<string, Record<string, unknown>> }
  const looser = structuredClone(reserved)
  looser.properties.nights = { ...looser.properties.nights, maximum: 60 }
  assert.equal((await call(httpUrl(broker, '/api/schemas/albergue.v1.booking.reserved/versions'), 'POST', looser)).status, 201)
  // a publisher whose folder still holds version 1: the broker starts with it and adds nothing (the same content is the same version)
  assert.equal((await call(httpUrl(broker, '/api/schemas/albergue.v1.booking.reserved/versions'), 'POST', reserved)).status, 200)
  const dir = await schemaDir(t, { 'albergue.v1.booking.reserved.json': reserved })
  await writeFile(join(dir, '_albergue.v1.defs.json'), await readFile(join(BUNDLED, '_albergue.v1.defs.json')))
  const lines: string[] = []
  const code = await runSchemasCheck(['--against', httpUrl(broker), dir], (line) => { lines.push(line) }, (line) => { lines.push(line) })
  assert.equal(code, 0, lines.join('\n'))
})


test('the image alone (embedded, a working folder the broker cannot write, as USER node in /app) still starts', async (t) => {
  // /app in the Dockerfile: root's files, the broker runs as `node`; here a folder of root's, the broker as nobody
  const app = await tempDir(t, 'ce-broker-review-app-')
  await chmod(app, 0o755)
  const asRoot = process.getuid?.() === 0
  if (!asRoot) await chmod(app, 0o555)
  const { CE_BROKER_DATA_DIR: _ignored, ...env } = process.env
  const child = spawn(process.execPath, [fileURLToPath(new URL('../../bin/ce-broker.js', import.meta.url)), '--mqtt-port', '0', '--http-port', '0'], {
    cwd: app,
    env: Object.fromEntries(Object.entries(env).filter(([name]) => !name.startsWith('CE_BROKER_'))),
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(asRoot ? { uid: 65534, gid: 65534 } : {})
  })
  defer(t, () => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  let output = ''
  const outcome = await new Promise<string>((resolve) => {
    const seen = (chunk: Buffer): void => {
      output += chunk.toString()
      if (output.includes('"msg":"ready"')) resolve('ready')
    }
    child.stdout.on('data', seen)
    child.stderr.on('data', seen)
    child.once('exit', (code) => { resolve(`exited ${String(code)}`) })
  })
  assert.equal(outcome, 'ready', output.split('\n').filter((line) => line.includes('data') || line.startsWith('ce-broker')).join('\n'))
})

// ---- found in the fixes (1d7ab89: every version compiled in an ajv instance of its own) -------------

test('a type whose schema $refs a type that sorts after it starts, as on 46951b8 (compiling is not order-dependent)', async (t) => {
  // acme.v1.a is registered (and compiled) before acme.v1.b exists in the registry
  const dir = await schemaDir(t, {
    'acme.v1.a.json': { $id: 'https://acme.example/a.json', type: 'object', properties: { n: { $ref: 'b.json#/properties/n' } } },
    'acme.v1.b.json': { $id: 'https://acme.example/b.json', type: 'object', properties: { n: { type: 'integer' } } }
  })
  const broker = await acmeBroker(t, dir)
  const subscriber = await connect(t, mqttUrl(broker))
  await subscriber.subscribeAsync(['acme/v1/a', '$DLQ/#'])
  const publisher = await connect(t, mqttUrl(broker))
  await publisher.publishAsync('acme/v1/a', event('acme.v1.a', { n: 'one' }), { qos: 1 })
  assert.equal((await nextMessage(subscriber)).topic, '$DLQ/acme/v1/a', 'n is checked through the $ref into acme.v1.b')
  // the CI check reads folders the same way: the folder is no bad input (exit 2)
  const lines: string[] = []
  assert.equal(await runSchemasCheck(['--against', dir, dir], (line) => { lines.push(line) }, (line) => { lines.push(line) }), 0, lines.join('\n'))
})

test('a $ref into another type checks the same after a restart as before it (the verdict does not depend on when a version was compiled)', async (t) => {
  const dataDir = await tempDir(t, 'ce-broker-review-data-')
  const dir = await schemaDir(t, {
    'acme.v1.celsius.json': { $id: 'https://acme.example/celsius.json', type: 'number', maximum: 50 },
    'acme.v1.reading.json': { $id: 'https://acme.example/reading.json', type: 'object', properties: { celsius: { $ref: 'celsius.json' } }, required: ['celsius'] }
  })
  const verdict = async (broker: Broker): Promise<string> => {
    const subscriber = await connect(t, mqttUrl(broker))
    await subscriber.subscribeAsync(['acme/v1/reading', '$DLQ/#'])
    const publisher = await connect(t, mqttUrl(broker))
    await publisher.publishAsync('acme/v1/reading', event('acme.v1.reading', { celsius: 55 }), { qos: 1 })
    return (await nextMessage(subscriber)).topic
  }
  const first = await acmeBroker(t, dir, { dataDir })
  // acme.v1.celsius widened (BACKWARD compatible): version 2 allows 60
  assert.equal((await call(httpUrl(first, '/api/schemas/acme.v1.celsius/versions'), 'POST', { $id: 'https://acme.example/celsius.json', type: 'number', maximum: 60 })).status, 201)
  const before = await verdict(first)
  await first.close()
  const second = await acmeBroker(t, dir, { dataDir })
  const after = await verdict(second)
  assert.equal(after, before, 'acme.v1.reading version 1 kept celsius version 1 where it was compiled first, and takes version 2 after a restart (or on a node started later)')
})

test('starting a registry of N types compiles O(N) schemas, not O(N²) (each version compiled with every other type\'s latest)', async (t) => {
  const files: Record<string, unknown> = {}
  const n = 60
  for (let i = 0; i < n; i++) files[`acme.v1.t${String(i).padStart(3, '0')}.json`] = { $id: `https://acme.example/t${i}.json`, type: 'object', properties: { a: { type: 'string' } } }
  const dir = await schemaDir(t, files)
  // every ajv instance the registry makes is an AjvCore: count the schemas added to them while the broker starts
  const core = createRequire(import.meta.url)('ajv/dist/core.js') as { default: { prototype: { addSchema: (...args: unknown[]) => unknown } } }
  const original = core.default.prototype.addSchema
  let added = 0
  core.default.prototype.addSchema = function countAddSchema (this: unknown, ...args: unknown[]) { added++; return original.apply(this, args) }
  try {
    await acmeBroker(t, dir)
  } finally {
    core.default.prototype.addSchema = original
  }
  // 46951b8..ede66c1: 73 for 60 types; here 2,323, and 600 types do not start within the plugin's 10 s
  assert.ok(added < 10 * n, `${added} schemas added to ajv to start ${n} types`)
})

test('a chain of types that $ref each other starts with one compile per type, not one per link (what a $ref reaches is added before compiling)', async (t) => {
  const files: Record<string, unknown> = {}
  const n = 20
  // acme.v1.c000 → c001 → … → c019: each type's schema reaches every one after it
  for (let i = 0; i < n; i++) {
    const next = i + 1 < n ? { $ref: `c${String(i + 1).padStart(3, '0')}.json` } : { type: 'integer' }
    files[`acme.v1.c${String(i).padStart(3, '0')}.json`] = { $id: `https://acme.example/c${String(i).padStart(3, '0')}.json`, type: 'object', properties: { next } }
  }
  const dir = await schemaDir(t, files)
  const core = createRequire(import.meta.url)('ajv/dist/core.js') as { default: { prototype: { getSchema: (...args: unknown[]) => unknown } } }
  const original = core.default.prototype.getSchema
  let compiles = 0
  core.default.prototype.getSchema = function countGetSchema (this: unknown, ...args: unknown[]) { if (String(args[0]).startsWith('https://acme.example/')) compiles++; return original.apply(this, args) }
  let broker: Broker
  try {
    broker = await acmeBroker(t, dir)
  } finally {
    core.default.prototype.getSchema = original
  }
  // compiled with ajv asking for each missing document in turn, a type k links from the end took k + 1 compiles: 210 here
  assert.ok(compiles <= n + 1, `${compiles} compiles to start a chain of ${n} types`)
  const nested = (depth: number): unknown => depth === n ? 'deep' : { next: nested(depth + 1) }
  assert.equal(await verdictOf(t, broker, 'acme/v1/c000', 'acme.v1.c000', nested(0)), '$DLQ/acme/v1/c000', 'the end of the chain is checked')
})

test('a lock file naming a live process that is no broker (its pid reused after a crash) does not keep the broker from starting', async (t) => {
  const dataDir = await tempDir(t, 'ce-broker-review-data-')
  const dir = await schemaDir(t, { 'acme.v1.temp.json': TEMP_V1 })
  // the broker crashed (kill -9, OOM, power loss) and its pid now belongs to something else
  const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' })
  defer(t, () => { other.kill('SIGKILL') })
  // the lock the crashed broker left: its pid (now the other process's) and its own start time (1: long before the other's)
  await writeFile(join(dataDir, 'schema-registry.lock'), `${String(other.pid)} 1`)
  const broker = await acmeBroker(t, dir, { dataDir })
  assert.equal((await call(httpUrl(broker, '/api/schemas'), 'GET')).status, 200)
})

// ---- a $ref into another type follows its latest version --------------------------------------------

/** Where an event of `type` with `data`, published on `topic`, lands: its topic (delivered) or the dead-letter topic. */
async function verdictOf (t: TestContext, broker: Broker, topic: string, type: string, data: unknown): Promise<string> {
  const subscriber = await connect(t, mqttUrl(broker))
  await subscriber.subscribeAsync([topic, '$DLQ/#'])
  const publisher = await connect(t, mqttUrl(broker))
  await publisher.publishAsync(topic, event(type, data), { qos: 1 })
  const { topic: landed } = await nextMessage(subscriber)
  subscriber.end()
  publisher.end()
  return landed
}

test('a new version of a type is followed by the $refs into it, through a chain of types, on the validation worker too', async (t) => {
  // acme.v1.reading → acme.v1.measure → acme.v1.celsius
  const dir = await schemaDir(t, {
    'acme.v1.celsius.json': { $id: 'https://acme.example/celsius.json', type: 'number', maximum: 50 },
    'acme.v1.measure.json': { $id: 'https://acme.example/measure.json', type: 'object', properties: { celsius: { $ref: 'celsius.json' } }, required: ['celsius'] },
    'acme.v1.reading.json': { $id: 'https://acme.example/reading.json', type: 'object', properties: { measure: { $ref: 'measure.json' } }, required: ['measure'] }
  })
  for (const workers of [0, 1]) {
    const broker = await acmeBroker(t, dir, { workers })
    assert.equal(await verdictOf(t, broker, 'acme/v1/reading', 'acme.v1.reading', { measure: { celsius: 55 } }), '$DLQ/acme/v1/reading', `workers ${workers}: 55 is above celsius version 1's maximum`)
    assert.equal((await call(httpUrl(broker, '/api/schemas/acme.v1.celsius/versions'), 'POST', { $id: 'https://acme.example/celsius.json', type: 'number', maximum: 60 })).status, 201)
    assert.equal(await verdictOf(t, broker, 'acme/v1/reading', 'acme.v1.reading', { measure: { celsius: 55 } }), 'acme/v1/reading', `workers ${workers}: acme.v1.reading still reaches celsius version 1 through acme.v1.measure`)
    assert.equal(await verdictOf(t, broker, 'acme/v1/reading', 'acme.v1.reading', { measure: { celsius: 65 } }), '$DLQ/acme/v1/reading', `workers ${workers}: 65 is above celsius version 2's maximum`)
    await broker.close()
  }
})

test('a version that a registered version\'s $ref could no longer compile with is refused (400 naming it), and nothing changes', async (t) => {
  const dir = await schemaDir(t, {
    'acme.v1.units.json': { $id: 'https://acme.example/units.json', $defs: { celsius: { type: 'number' } } },
    'acme.v1.reading.json': { $id: 'https://acme.example/reading.json', type: 'object', properties: { celsius: { $ref: 'units.json#/$defs/celsius' } } }
  })
  const dataDir = await tempDir(t, 'ce-broker-review-data-')
  const broker = await acmeBroker(t, dir, { dataDir, workers: 1 })
  // the definition acme.v1.reading reaches is renamed: no BACKWARD rule sees it (units has no instance constraint), the $ref would dangle
  const renamed = await call(httpUrl(broker, '/api/schemas/acme.v1.units/versions'), 'POST', { $id: 'https://acme.example/units.json', $defs: { kelvin: { type: 'number' } } })
  assert.equal(renamed.status, 400)
  assert.equal(at(renamed.body, 'error', 'code'), 'invalid_schema')
  assert.match(String(at(renamed.body, 'error', 'message')), /"acme\.v1\.reading" version 1 \$refs this type's latest version and would no longer compile/)
  const versions = at((await call(httpUrl(broker, '/api/schemas/acme.v1.units/versions'), 'GET')).body, 'versions')
  assert.equal(Array.isArray(versions) ? versions.length : versions, 1)
  assert.equal(await verdictOf(t, broker, 'acme/v1/reading', 'acme.v1.reading', { celsius: 'warm' }), '$DLQ/acme/v1/reading', 'the $ref still checks celsius')
  await broker.close()
  // and the next start, which compiles everything afresh, agrees
  const again = await acmeBroker(t, dir, { dataDir })
  assert.equal(await verdictOf(t, again, 'acme/v1/reading', 'acme.v1.reading', { celsius: 21 }), 'acme/v1/reading')
})

test('when two types claim the $id a $ref names, it reaches the first by name, whichever registered first, and follows a new claimant', async (t) => {
  const shared = 'https://acme.example/celsius.json'
  const dir = await schemaDir(t, {
    'acme.v1.reading.json': { $id: 'https://acme.example/reading.json', type: 'object', properties: { celsius: { $ref: 'celsius.json' } }, required: ['celsius'] },
    'acme.v2.celsius.json': { $id: shared, type: 'number', maximum: 50 }
  })
  const broker = await acmeBroker(t, dir, { workers: 1 })
  assert.equal(await verdictOf(t, broker, 'acme/v1/reading', 'acme.v1.reading', { celsius: 55 }), '$DLQ/acme/v1/reading', 'acme.v2.celsius is the only claimant')
  // acme.v1.celsius sorts first: the $ref reaches it from now on, as it would after a restart
  assert.equal((await call(httpUrl(broker, '/api/schemas/acme.v1.celsius/versions'), 'POST', { $id: shared, type: 'number', maximum: 60 })).status, 201)
  assert.equal(await verdictOf(t, broker, 'acme/v1/reading', 'acme.v1.reading', { celsius: 55 }), 'acme/v1/reading')
})
