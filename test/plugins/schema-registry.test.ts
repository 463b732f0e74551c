import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { fileURLToPath } from 'node:url'
import { SchemaRegistry } from '../../plugins/schema-validation/registry.js'
import { SchemaFileError } from '../../src/index.js'
import { defer } from '../helpers/cleanup.js'

const BUNDLED = fileURLToPath(new URL('../../schemas/', import.meta.url))

async function folder (t: TestContext, files: Record<string, unknown>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ce-broker-schemas-'))
  defer(t, () => rm(dir, { recursive: true, force: true }))
  for (const [name, content] of Object.entries(files)) {
    await writeFile(join(dir, name), typeof content === 'string' ? content : JSON.stringify(content))
  }
  return dir
}

const reserved = {
  booking_id: 'b-1',
  pilgrim_id: 'p-1',
  check_in_date: '2026-05-01',
  check_out_date: '2026-05-02',
  nights: 1,
  total_amount: 12.5,
  expires_at: '2026-04-30T20:00:00Z'
}

test('the bundled registry covers the 14 albergue v1 events and checks booking.reserved', async () => {
  const registry = await SchemaRegistry.load(BUNDLED)
  const types = registry.list().map((e) => e.type).sort()
  assert.equal(types.length, 14)
  assert.ok(types.every((type) => type.startsWith('albergue.v1.')))
  const validate = registry.forType('albergue.v1.booking.reserved')
  assert.ok(validate !== undefined)
  assert.equal(validate(reserved), true)
  assert.equal(validate({ ...reserved, nights: 0 }), false)
  assert.deepEqual(validate.errors?.map((e) => [e.instancePath, e.message]), [['/nights', 'must be >= 1']])
  assert.equal(validate({ ...reserved, check_in_date: 'tomorrow' }), false)
  assert.equal(validate({ ...reserved, expires_at: '2026-04-30 20:00' }), false)
  assert.equal(validate({ ...reserved, total_amount: -1 }), false)
  assert.equal(validate({ ...reserved, unexpected: true }), false)
})

test('shared definitions are reached through $ref across files; every bundled schema compiles with them', async () => {
  const registry = await SchemaRegistry.load(BUNDLED)
  const registered = registry.forType('albergue.v1.pilgrim.registered')
  assert.ok(registered !== undefined)
  const pilgrim = { pilgrim_id: 'p-1', first_name: 'Ana', last_name: 'Pérez', nationality: 'ES', document_type: 'dni', document_number: '12345678Z', birth_date: '1990-02-03', registered_at: '2026-05-01T17:00:00+02:00' }
  assert.equal(registered(pilgrim), true, JSON.stringify(registered.errors))
  assert.equal(registered({ ...pilgrim, nationality: 'Spain' }), false, 'the country pattern comes from the shared definitions file')
  assert.equal(registered({ ...pilgrim, email: 'not-an-email' }), false)
})

test('draft-07 and draft 2020-12 files live side by side; file names name types; $id selects by dataschema', async (t) => {
  const dir = await folder(t, {
    'acme.v1.temp.json': { $schema: 'http://json-schema.org/draft-07/schema#', type: 'object', properties: { celsius: { type: 'number' } }, required: ['celsius'] },
    'anything.json': { $schema: 'https://json-schema.org/draft/2020-12/schema', $id: 'https://acme.example/humidity.json', 'x-cloudevents-type': 'acme.v1.humidity', $ref: 'percent.json' },
    '_percent.json': { $schema: 'https://json-schema.org/draft/2020-12/schema', $id: 'https://acme.example/percent.json', type: 'number', minimum: 0, maximum: 100 }
  })
  const registry = await SchemaRegistry.load(dir)
  assert.deepEqual(registry.list().map((e) => [e.type, e.file, e.draft]).sort(), [
    ['acme.v1.humidity', 'anything.json', '2020-12'],
    ['acme.v1.temp', 'acme.v1.temp.json', 'draft-07']
  ])
  assert.equal(registry.forType('acme.v1.temp')?.({ celsius: 'hot' }), false)
  assert.equal(registry.forType('acme.v1.humidity')?.(120), false)
  assert.equal(registry.forId('https://acme.example/humidity.json')?.(50), true)
  assert.equal(registry.forType('_percent'), undefined, 'definition files check no type')
})

test('a broken schema stops loading with the file name and the ajv message', async (t) => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ 'a.v1.x.json': '{ not json' }, /^schema a\.v1\.x\.json is not JSON/],
    [{ 'a.v1.x.json': { type: 'object', properties: { n: { type: 'integr' } } } }, /^schema a\.v1\.x\.json .*must be equal to one of the allowed values|^schema a\.v1\.x\.json .*schema is invalid/],
    [{ 'a.v1.x.json': { $ref: 'missing.json' } }, /^schema a\.v1\.x\.json can't resolve reference missing\.json/],
    [{ 'a.v1.x.json': { $schema: 'http://json-schema.org/draft-04/schema#' } }, /^schema a\.v1\.x\.json declares "\$schema": "http:\/\/json-schema\.org\/draft-04\/schema#"; use draft 2020-12 or draft-07/],
    [{ 'a.json': { 'x-cloudevents-type': 'a.v1.x' }, 'b.json': { 'x-cloudevents-type': 'a.v1.x' } }, /^schema b\.json checks type "a\.v1\.x", which a\.json checks already/]
  ]
  for (const [files, message] of cases) {
    const dir = await folder(t, files)
    await assert.rejects(SchemaRegistry.load(dir), (err: unknown) => {
      assert.ok(err instanceof SchemaFileError, String(err))
      assert.equal(err.code, 'BRK_SCHEMA_FILE_INVALID')
      assert.match(err.message, message)
      return true
    })
  }
  await assert.rejects(SchemaRegistry.load(join(tmpdir(), 'no-such-ce-broker-schemas')), /cannot be read as a schema folder/)
})
