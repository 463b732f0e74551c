import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { fileURLToPath } from 'node:url'
import { SchemaFileError, newApiKey } from '../../src/index.js'
import { collectMessages, connect, httpUrl, mqttUrl, nextMessage, startBroker } from '../helpers/broker.js'
import { defer } from '../helpers/cleanup.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved } from '../helpers/events.js'
import { redisUnavailable, startRedis } from '../helpers/redis.js'

const TYPE = 'albergue.v1.booking.reserved'
const BUNDLED = fileURLToPath(new URL('../../schemas/', import.meta.url))

/** The parts of booking.reserved's schema the tests change. */
interface ReservedSchema {
  required: string[]
  properties: Record<string, Record<string, unknown>>
}

/** The bundled schema of booking.reserved, as a starting point for new versions. */
async function reservedSchema (): Promise<ReservedSchema> {
  const schema: ReservedSchema = JSON.parse(await readFile(join(BUNDLED, `${TYPE}.json`), 'utf8'))
  return schema
}

/** The value at `path` in parsed JSON, or `undefined`. */
function at (value: unknown, ...path: Array<string | number>): unknown {
  let here = value
  for (const key of path) here = typeof here === 'object' && here !== null ? Reflect.get(here, key) : undefined
  return here
}

/** The entries of an array in parsed JSON. */
function list (value: unknown): unknown[] {
  return Array.isArray(value) ? value : []
}

async function tempDir (t: TestContext, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  defer(t, () => rm(dir, { recursive: true, force: true }))
  return dir
}

/** booking.reserved as `GET /api/schemas` lists it. */
async function listing (url: string): Promise<unknown> {
  return list(at((await call(url, 'GET')).body, 'schemas')).find((s) => at(s, 'type') === TYPE)
}

async function call (url: string, method: string, body?: unknown): Promise<{ status: number, body: unknown }> {
  const res = await fetch(url, body === undefined ? { method } : { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const text = await res.text()
  return { status: res.status, body: text === '' ? undefined : JSON.parse(text) }
}

/** The schema with `nights` allowed up to `max`: looser than the bundled 30, so BACKWARD compatible. */
async function withMaxNights (max: number): Promise<ReservedSchema> {
  const schema = await reservedSchema()
  schema.properties.nights = { ...schema.properties.nights, maximum: max }
  return schema
}

/** The whole API on a broker whose versions live in `store`. */
async function registryApi (t: TestContext, store: 'file' | 'redis'): Promise<void> {
  const broker = await startBroker(t, store === 'redis' ? { redis: { url: (await startRedis(t)).url } } : {})
  const url = (path: string): string => httpUrl(broker, path)

  const reserved = await listing(url('/api/schemas'))
  assert.deepEqual(['version', 'versions', 'compatibility', 'mode', 'shadowFailures'].map((key) => at(reserved, key)), [1, 1, 'BACKWARD', 'enforce', 0])

  const looser = await withMaxNights(60)
  assert.deepEqual(await call(url(`/api/schemas/${TYPE}/versions`), 'POST', looser), { status: 201, body: { type: TYPE, version: 2 } })
  assert.deepEqual(await call(url(`/api/schemas/${TYPE}/versions`), 'POST', looser), { status: 200, body: { type: TYPE, version: 2 } }, 'the same schema is the version it was')

  const stricter = await withMaxNights(60)
  stricter.required = [...stricter.required, 'beds']
  stricter.properties.nights = { ...stricter.properties.nights, minimum: 2 }
  const refused = await call(url(`/api/schemas/${TYPE}/versions`), 'POST', stricter)
  assert.equal(refused.status, 409)
  assert.equal(at(refused.body, 'error', 'code'), 'incompatible_schema')
  const errors = list(at(refused.body, 'error', 'errors'))
  const paths = errors.map((e) => at(e, 'path'))
  assert.ok(paths.some((p) => typeof p === 'string' && (p.endsWith('/required') || p.includes('beds'))), JSON.stringify(errors))
  assert.ok(paths.includes('/properties/nights/minimum'), JSON.stringify(errors))

  const dry = await call(url(`/api/schemas/${TYPE}/compatibility`), 'POST', stricter)
  assert.equal(dry.status, 200)
  assert.equal(at(dry.body, 'compatible'), false)
  assert.deepEqual(at(dry.body, 'errors'), errors)
  assert.equal(at((await call(url(`/api/schemas/${TYPE}/compatibility`), 'POST', await withMaxNights(90))).body, 'compatible'), true)

  const invalid = await call(url(`/api/schemas/${TYPE}/versions`), 'POST', { type: 'object', properties: { nights: { type: 'integr' } } })
  assert.equal(invalid.status, 400)
  assert.equal(at(invalid.body, 'error', 'code'), 'invalid_schema')
  assert.equal((await call(url(`/api/schemas/${TYPE}/versions`), 'POST', [1, 2])).status, 400)
  assert.equal((await call(url('/api/schemas/other.type/versions'), 'POST', { 'x-cloudevents-type': TYPE })).status, 400, 'a schema naming another type')
  assert.equal((await call(url('/api/schemas/a%2Fb/versions'), 'POST', { type: 'object' })).status, 400, 'a type that is a path')

  const versions = await call(url(`/api/schemas/${TYPE}/versions`), 'GET')
  assert.deepEqual(list(at(versions.body, 'versions')).map((v) => at(v, 'version')), [1, 2])
  assert.equal(at((await call(url(`/api/schemas/${TYPE}/versions/latest`), 'GET')).body, 'version'), 2)
  assert.equal(at((await call(url(`/api/schemas/${TYPE}/versions/1`), 'GET')).body, 'schema', 'properties', 'nights', 'maximum'), 30)
  assert.equal((await call(url(`/api/schemas/${TYPE}/versions/3`), 'GET')).status, 404)
  assert.equal((await call(url('/api/schemas/no.such.type/versions'), 'GET')).status, 404)

  assert.deepEqual((await call(url(`/api/schemas/${TYPE}/config`), 'PUT', { compatibility: 'NONE' })).body, { type: TYPE, compatibility: 'NONE', mode: 'enforce' })
  assert.deepEqual(await call(url(`/api/schemas/${TYPE}/versions`), 'POST', stricter), { status: 201, body: { type: TYPE, version: 3 } }, 'NONE lets a breaking change in')
  assert.deepEqual((await call(url(`/api/schemas/${TYPE}/config`), 'PUT', { mode: 'shadow' })).body, { type: TYPE, compatibility: 'NONE', mode: 'shadow' }, 'a PUT changes what it names')
  assert.equal((await call(url(`/api/schemas/${TYPE}/config`), 'PUT', { compatibility: 'SIDEWAYS' })).status, 400)
  assert.equal((await call(url(`/api/schemas/${TYPE}/config`), 'PUT', { strictness: 1 })).status, 400)
}

test('the registry API, embedded (a file store): versions, the same schema again, a breaking change named, an invalid schema, the dry run, the settings', async (t) => {
  await registryApi(t, 'file')
})

test('the registry API with Redis: the same answers from the Redis store', { skip: redisUnavailable() ?? false }, async (t) => {
  await registryApi(t, 'redis')
})

test('reading the registry needs the read scope, changing it admin', async (t) => {
  const keys = { read: newApiKey(), admin: newApiKey() }
  const broker = await startBroker(t, { auth: { apiKeys: [{ id: 'grafana', key: keys.read.hash, scopes: ['read'] }, { id: 'ops', key: keys.admin.hash, scopes: ['admin', 'read'] }] } })
  const as = async (key: string, method: string, path: string, body?: unknown): Promise<number> => {
    const res = await fetch(httpUrl(broker, path), { method, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) })
    return res.status
  }
  assert.equal(await as(keys.read.key, 'GET', '/api/schemas'), 200)
  assert.equal(await as(keys.read.key, 'GET', `/api/schemas/${TYPE}/versions/latest`), 200)
  assert.equal(await as(keys.read.key, 'POST', `/api/schemas/${TYPE}/versions`, await withMaxNights(60)), 403)
  assert.equal(await as(keys.read.key, 'PUT', `/api/schemas/${TYPE}/config`, { mode: 'shadow' }), 403)
  assert.equal(await as(keys.admin.key, 'POST', `/api/schemas/${TYPE}/versions`, await withMaxNights(60)), 201)
})

test('an event is checked against the latest version, or the one its dataschema names', async (t) => {
  const broker = await startBroker(t, { validation: { workers: 1 } })
  const subscriber = await connect(t, mqttUrl(broker))
  await subscriber.subscribeAsync([BOOKING_RESERVED_TOPIC, '$DLQ/#'])
  const publisher = await connect(t, mqttUrl(broker))
  const send = async (event: Record<string, unknown>): Promise<string> => {
    await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })
    return (await nextMessage(subscriber)).topic
  }

  assert.equal(await send(bookingReserved({ nights: 45 })), `$DLQ/${BOOKING_RESERVED_TOPIC}`, 'version 1 allows 30 nights')
  assert.equal((await call(httpUrl(broker, `/api/schemas/${TYPE}/versions`), 'POST', await withMaxNights(60))).status, 201)
  assert.equal(await send(bookingReserved({ nights: 45 })), BOOKING_RESERVED_TOPIC, 'version 2, on the validation worker, without a restart')
  const pinned = bookingReserved({ nights: 45 }, { dataschema: `https://broker.example/api/schemas/${TYPE}/versions/1` })
  assert.equal(await send(pinned), `$DLQ/${BOOKING_RESERVED_TOPIC}`, 'dataschema names version 1')
  const metrics = await (await fetch(httpUrl(broker, '/metrics'))).text()
  assert.match(metrics, new RegExp(`ce_broker_schema_validations_total\\{type="${TYPE.replaceAll('.', '\\.')}",version="2",outcome="accepted"\\} 1`))
  assert.match(metrics, new RegExp(`ce_broker_schema_validations_total\\{type="${TYPE.replaceAll('.', '\\.')}",version="1",outcome="schema_validation_failed"\\} 2`))
})

test('shadow mode: an event its schema refuses is delivered, audited would_reject with its errors, counted, not dead-lettered', async (t) => {
  const broker = await startBroker(t)
  assert.equal((await call(httpUrl(broker, `/api/schemas/${TYPE}/config`), 'PUT', { mode: 'shadow' })).status, 200)
  const subscriber = await connect(t, mqttUrl(broker))
  await subscriber.subscribeAsync([BOOKING_RESERVED_TOPIC, '$DLQ/#', '$audit/#'])
  const publisher = await connect(t, mqttUrl(broker))
  const event = bookingReserved({ nights: 0 })
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })
  const got = await collectMessages(subscriber, 2)
  const delivered = got.find((m) => m.topic === BOOKING_RESERVED_TOPIC)
  const audit = got.find((m) => m.topic === `$audit/${BOOKING_RESERVED_TOPIC}`)
  assert.ok(delivered !== undefined && audit !== undefined, got.map((m) => m.topic).join(', '))
  assert.equal(at(JSON.parse(delivered.payload.toString()), 'id'), event.id)
  const record: unknown = JSON.parse(audit.payload.toString())
  assert.equal(at(record, 'outcome'), 'would_reject')
  assert.equal(at(record, 'reason'), 'schema_validation_failed')
  assert.equal(at(record, 'event', 'schemaVersion'), 1)
  assert.deepEqual(at(record, 'errors'), [{ path: '/data/nights', message: 'must be >= 1' }])
  assert.match(await (await fetch(httpUrl(broker, '/metrics'))).text(), /ce_broker_schema_shadow_failures_total\{type="albergue\.v1\.booking\.reserved"\} 1/)
  assert.equal(list(at((await call(httpUrl(broker, '/api/dlq'), 'GET')).body, 'items')).length, 0)
  const listed = await listing(httpUrl(broker, '/api/schemas'))
  assert.deepEqual([at(listed, 'mode'), at(listed, 'shadowFailures')], ['shadow', 1])
})

test('embedded, registered versions survive a restart; an edited file the rule refuses stops start-up naming the change', async (t) => {
  const dataDir = await tempDir(t, 'ce-broker-data-')
  const first = await startBroker(t, { schemas: { dataDir } })
  assert.equal((await call(httpUrl(first, `/api/schemas/${TYPE}/versions`), 'POST', await withMaxNights(60))).status, 201)
  await first.close()

  const second = await startBroker(t, { schemas: { dataDir } })
  const listed = await listing(httpUrl(second, '/api/schemas'))
  assert.deepEqual([at(listed, 'version'), at(listed, 'versions'), at(listed, 'schema', 'properties', 'nights', 'maximum')], [2, 2, 60], 'the bundled file is version 1 again, not a third')
  await second.close()

  const dir = await tempDir(t, 'ce-broker-schemas-')
  const stricter = await withMaxNights(60)
  stricter.properties.nights = { ...stricter.properties.nights, minimum: 3 }
  await writeFile(join(dir, `${TYPE}.json`), JSON.stringify(stricter))
  await writeFile(join(dir, '_albergue.v1.defs.json'), await readFile(join(BUNDLED, '_albergue.v1.defs.json')))
  await assert.rejects(startBroker(t, { schemas: { dataDir, dir } }), (err: unknown) => {
    assert.ok(err instanceof SchemaFileError, String(err))
    assert.match(err.message, /is not BACKWARD compatible with the versions of "albergue\.v1\.booking\.reserved" registered: \/properties\/nights\/minimum: /)
    return true
  })
})

test('a dataschema naming another type\'s laxer schema is not followed: the event is checked against its own type', async (t) => {
  const broker = await startBroker(t, { validation: { workers: 0 } })
  const subscriber = await connect(t, mqttUrl(broker))
  await subscriber.subscribeAsync([BOOKING_RESERVED_TOPIC, '$DLQ/#'])
  const publisher = await connect(t, mqttUrl(broker))
  // booking.cancelled's schema does not know nights at all: pointing at it must not let nights 0 through
  const cancelled = await call(httpUrl(broker, '/api/schemas/albergue.v1.booking.cancelled/versions/latest'), 'GET')
  for (const dataschema of ['https://broker.example/api/schemas/albergue.v1.booking.cancelled/versions/1', String(at(cancelled.body, 'id'))]) {
    await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved({ nights: 0 }, { dataschema })), { qos: 1 })
    const got = await nextMessage(subscriber)
    assert.equal(got.topic, `$DLQ/${BOOKING_RESERVED_TOPIC}`, dataschema)
    assert.deepEqual(at(JSON.parse(got.payload.toString()), 'data', 'errors'), [{ path: '/data/nights', message: 'must be >= 1' }])
  }
})

test('a registry file that is not JSON stops start-up naming it', async (t) => {
  const dataDir = await tempDir(t, 'ce-broker-data-')
  await writeFile(join(dataDir, 'schema-registry.json'), '{ "types": ')
  await assert.rejects(startBroker(t, { schemas: { dataDir } }), (err: unknown) => {
    assert.ok(err instanceof SchemaFileError, String(err))
    assert.match(err.message, /schema-registry\.json is not JSON/)
    return true
  })
})

test('a version registered before that no longer compiles with the folder\'s shared definitions stops start-up naming it', async (t) => {
  const dataDir = await tempDir(t, 'ce-broker-data-')
  const first = await startBroker(t, { schemas: { dataDir } })
  await first.close()
  // a folder without the albergue definitions the registered versions $ref
  const dir = await tempDir(t, 'ce-broker-schemas-')
  await writeFile(join(dir, 'acme.v1.temp.json'), JSON.stringify({ type: 'object' }))
  await assert.rejects(startBroker(t, { schemas: { dataDir, dir } }), (err: unknown) => {
    assert.ok(err instanceof SchemaFileError, String(err))
    assert.match(err.message, /^schema albergue\.v1\.[a-z_.]+ version 1, registered before \(in the file store\), does not compile with the shared definitions of schemas\.dir: /)
    return true
  })
})
