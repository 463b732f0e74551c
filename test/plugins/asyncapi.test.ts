import assert from 'node:assert/strict'
import { readdir } from 'node:fs/promises'
import { request as httpRequest } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { test } from 'node:test'
import { DiagnosticSeverity, Parser } from '@asyncapi/parser'
import { Ajv2020 } from 'ajv/dist/2020.js'
import addFormats from 'ajv-formats'
import { parse as parseYaml } from 'yaml'
import { hashApiKey } from '../../src/index.js'
import { hashPassword } from '../../plugins/auth/index.js'
import { bundleSchemas } from '../../plugins/catalog/asyncapi-schemas.js'
import { describeListeners } from '../../plugins/catalog/asyncapi-servers.js'
import { makeCert } from '../helpers/certs.js'
import { connect, httpUrl, mqttUrl, startBroker, subscribeGranted } from '../helpers/broker.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved } from '../helpers/events.js'
import { receiver } from '../helpers/receiver.js'

/** The parts of the document the tests read. */
interface Operation { action: string, channel: { $ref: string }, messages: Array<{ $ref: string }>, description: string, [extension: `x-${string}`]: unknown }
interface AsyncApiJson {
  asyncapi: string
  info: { version: string }
  servers: Record<string, { host: string, protocol: string, pathname?: string, security?: Array<{ $ref: string }> }>
  channels: Record<string, { address: string, title: string, messages: Record<string, { $ref: string }> }>
  operations: Record<string, Operation>
  components: { schemas: Record<string, Record<string, unknown>>, messages: Record<string, { name: string, payload: object, 'x-schema-registry'?: { version: number, versions: number } }>, securitySchemes?: Record<string, { type: string }> }
}

/** The 14 albergue types, as the bundled schema folder names them. */
async function albergueTypes (): Promise<string[]> {
  const files = await readdir(new URL('../../schemas/', import.meta.url))
  return files.filter((file) => file.startsWith('albergue.') && file.endsWith('.json')).map((file) => file.replace(/\.json$/, '')).sort()
}

/** A GET with headers node's fetch does not let a caller set (`Host`), or trusting a test certificate. */
async function get (url: string, headers: Record<string, string> = {}, ca?: string): Promise<{ status: number, type: string, body: string }> {
  const send = url.startsWith('https:') ? httpsRequest : httpRequest
  return await new Promise((resolve, reject) => {
    send(url, { headers, ...(ca === undefined ? {} : { ca, servername: 'localhost' }) }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => { chunks.push(chunk) })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body: Buffer.concat(chunks).toString('utf8') }) })
    }).on('error', reject).end()
  })
}

/** The errors and warnings the AsyncAPI parser reports for `text` (infos and hints left out), printable. */
async function problemsOf (parser: Parser, text: string): Promise<string[]> {
  const { diagnostics } = await parser.parse(text)
  return diagnostics
    .filter((d) => d.severity === DiagnosticSeverity.Error || d.severity === DiagnosticSeverity.Warning)
    .map((d) => `${d.severity === DiagnosticSeverity.Error ? 'error' : 'warning'} ${d.code} at ${d.path.join('/')}: ${d.message}`)
}

/** The operations acting on the channel of `type`. */
function operationsOf (doc: AsyncApiJson, type: string): Operation[] {
  const channel = Object.entries(doc.channels).find(([, c]) => c.title === type)?.[0]
  return Object.values(doc.operations).filter((op) => op.channel.$ref === `#/channels/${channel}`)
}

/** A validator of the payload the document gives `type`'s message, read from the document itself ($refs and all). */
function payloadValidator (doc: AsyncApiJson, type: string): (event: unknown) => boolean {
  const ajv = new Ajv2020({ strict: false })
  addFormats.default(ajv)
  ajv.addSchema(doc, 'asyncapi.json')
  const name = Object.entries(doc.components.messages).find(([, m]) => m.name === type)?.[0]
  assert.ok(name !== undefined, `no message for ${type}`)
  const validate = ajv.compile({ $ref: `asyncapi.json#/components/messages/${name}/payload` })
  return (event) => validate(event)
}

test('GET /api/asyncapi: an AsyncAPI 3.0 document of the registry and the catalog that the parser takes without error or warning, as JSON and YAML, and live', async (t) => {
  const broker = await startBroker(t)
  const parser = new Parser()
  const hook = await receiver(t)
  const secret = 'whsec-never-in-the-document-0123'
  const created = await fetch(httpUrl(broker, '/api/webhooks'), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ service_id: 'notification-service', webhook_url: `${hook.url}?token=path-token-never-shown`, topic_filters: ['albergue.v1.booking.*'], secret })
  })
  assert.equal(created.status, 201)
  const registration = await connect(t, mqttUrl(broker), { clientId: 'registration-service' })
  await subscribeGranted(registration, ['albergue/v1/+/reserved'], 1)
  const booking = await connect(t, mqttUrl(broker), { clientId: 'booking-service' })
  await booking.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved()), { qos: 1 })
  await booking.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved()), { qos: 1 })

  const json = await get(httpUrl(broker, '/api/asyncapi'))
  assert.equal(json.status, 200)
  assert.match(json.type, /^application\/json/)
  assert.deepEqual(await problemsOf(parser, json.body), [])
  const doc = JSON.parse(json.body) as AsyncApiJson
  assert.equal(doc.asyncapi, '3.0.0')

  const types = await albergueTypes()
  assert.equal(types.length, 14)
  assert.deepEqual(Object.values(doc.channels).map((c) => [c.title, c.address]).sort(), types.map((type) => [type, type.replaceAll('.', '/')]))
  assert.deepEqual(Object.keys(doc.servers), ['mqtt', 'ws'], 'no TLS server unless mqtt.tls is set')
  assert.deepEqual([doc.servers.mqtt?.host, doc.servers.mqtt?.protocol], [`127.0.0.1:${broker.ports.mqtt}`, 'mqtt'])
  assert.deepEqual([doc.servers.ws?.host, doc.servers.ws?.protocol, doc.servers.ws?.pathname], [`127.0.0.1:${broker.ports.http}`, 'ws', '/mqtt'])

  const reserved = operationsOf(doc, 'albergue.v1.booking.reserved')
  const send = reserved.filter((op) => op.action === 'send')
  assert.deepEqual(send.map((op) => (op['x-publishers-seen'] as Array<{ publisher: string }>).map((p) => p.publisher)), [['booking-service']])
  assert.match(send[0]?.description ?? '', /`booking-service` \(last /)
  const receive = reserved.filter((op) => op.action === 'receive')
  assert.equal(receive.length, 2, 'one for MQTT subscribers, one for the webhook')
  assert.deepEqual(receive.map((op) => op['x-mqtt-subscribers']).filter((s) => s !== undefined), [[{ clientId: 'registration-service', filter: 'albergue/v1/+/reserved', qos: 1 }]])
  const webhook = receive.find((op) => op['x-webhook'] !== undefined)
  assert.deepEqual(webhook?.['x-webhook'], { id: (await created.json() as { id: string }).id, service_id: 'notification-service', host: new URL(hook.url).host, mode: 'binary', topic_filters: ['albergue/v1/booking/#'] })
  assert.match(webhook?.description ?? '', /POSTed to 127\.0\.0\.1:\d+ /)
  assert.equal(operationsOf(doc, 'albergue.v1.payment.completed').length, 2, 'the webhook\'s filters do not match payments: send and receive only')
  assert.ok(!json.body.includes(secret) && !json.body.includes('path-token-never-shown'), 'neither the secret nor the URL beyond its host')

  // data is the registered schema, its $refs into the shared definitions pointing inside the document
  const registered = await (await fetch(httpUrl(broker, '/api/schemas/albergue.v1.booking.reserved/versions/latest'))).json() as { schema: { properties: Record<string, Record<string, unknown>> } }
  const data = doc.components.schemas['albergue.v1.booking.reserved'] as { properties: Record<string, unknown> }
  assert.deepEqual(data.properties.nights, registered.schema.properties.nights)
  assert.deepEqual(data.properties.check_in_date, { $ref: '#/components/schemas/_albergue.v1.defs/$defs/date' })
  const valid = payloadValidator(doc, 'albergue.v1.booking.reserved')
  assert.equal(valid(bookingReserved()), true)
  assert.equal(valid(bookingReserved({ nights: 0 })), false, 'the data schema is the registered one')
  assert.equal(valid(bookingReserved({ check_in_date: '1st of May' })), false, 'through the shared definitions')
  assert.equal(valid(bookingReserved({}, { type: 'albergue.v1.booking.cancelled' })), false, 'the envelope names its type')
  assert.equal(valid(bookingReserved({}, { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', priority: 3 })), true, 'extensions pass')

  const yaml = await get(httpUrl(broker, '/api/asyncapi'), { accept: 'application/yaml' })
  assert.equal(yaml.status, 200)
  assert.match(yaml.type, /^application\/yaml/)
  assert.deepEqual(await problemsOf(parser, yaml.body), [])
  const fromYaml = parseYaml(yaml.body) as AsyncApiJson
  assert.deepEqual([fromYaml.channels, fromYaml.components.schemas], [doc.channels, doc.components.schemas])

  // a new version registered through the API is in the next document
  const next = { ...registered.schema, properties: { ...registered.schema.properties, nights: { ...registered.schema.properties.nights, maximum: 60 } } }
  const added = await fetch(httpUrl(broker, '/api/schemas/albergue.v1.booking.reserved/versions'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(next) })
  assert.equal(added.status, 201)
  const live = await (await fetch(httpUrl(broker, '/api/asyncapi'))).json() as AsyncApiJson
  const message = Object.values(live.components.messages).find((m) => m.name === 'albergue.v1.booking.reserved')
  assert.deepEqual([message?.['x-schema-registry']?.version, message?.['x-schema-registry']?.versions], [2, 2])
  assert.notEqual(live.info.version, doc.info.version)
  assert.equal(payloadValidator(live, 'albergue.v1.booking.reserved')(bookingReserved({ nights: 45 })), true)
  assert.equal(valid(bookingReserved({ nights: 45 })), false, 'and not in the one before')
})

test('the parser reports a broken document: the zero-problem assertion can fail', async (t) => {
  const broker = await startBroker(t)
  const doc = await (await fetch(httpUrl(broker, '/api/asyncapi'))).json() as AsyncApiJson
  const [first, ...others] = Object.values(doc.operations)
  const second = others.find((op) => op.channel.$ref !== first?.channel.$ref)
  assert.ok(first !== undefined && second !== undefined)
  // an operation sending another channel's message, and a data schema pointing nowhere
  first.messages = second.messages
  const schemas = doc.components.schemas['albergue.v1.booking.reserved'] as { properties: Record<string, unknown> }
  schemas.properties.nights = { $ref: '#/components/schemas/nowhere' }
  const problems = await problemsOf(new Parser(), JSON.stringify(doc))
  assert.ok(problems.some((p) => p.startsWith('error asyncapi3-operation-messages-from-referred-channel')), problems.join('\n'))
  assert.ok(problems.some((p) => p.startsWith('error invalid-ref')), problems.join('\n'))
})

test('with mqtt.tls and http.tls the document has the MQTT/TLS and WSS servers on their bound ports, with the user-password scheme once users exist; it needs the read scope', async (t) => {
  const cert = await makeCert(t)
  const key = 'ceb_asyncapi-test-key-0123456789abcdef'
  const broker = await startBroker(t, {
    mqtt: { tls: { port: 0, key: cert.keyFile, cert: cert.certFile } },
    http: { tls: { key: cert.keyFile, cert: cert.certFile } },
    auth: {
      users: [{ username: 'booking-service', password: await hashPassword('booking-pass', 10), roles: ['publisher'] }],
      apiKeys: [{ id: 'reader', key: hashApiKey(key), scopes: ['read'] }]
    }
  })
  const url = `https://127.0.0.1:${broker.ports.http}/api/asyncapi`
  assert.equal((await get(url, {}, cert.cert)).status, 401)
  const answer = await get(url, { authorization: `Bearer ${key}` }, cert.cert)
  assert.equal(answer.status, 200)
  assert.deepEqual(await problemsOf(new Parser(), answer.body), [])
  const doc = JSON.parse(answer.body) as AsyncApiJson
  assert.deepEqual(Object.keys(doc.servers), ['mqtt', 'mqtts', 'wss'])
  assert.deepEqual([doc.servers.mqtts?.host, doc.servers.mqtts?.protocol], [`127.0.0.1:${broker.ports.mqttTls}`, 'secure-mqtt'])
  assert.deepEqual([doc.servers.wss?.host, doc.servers.wss?.protocol, doc.servers.wss?.pathname], [`127.0.0.1:${broker.ports.http}`, 'wss', '/mqtt'])
  for (const server of Object.values(doc.servers)) assert.deepEqual(server.security, [{ $ref: '#/components/securitySchemes/mqttUserPassword' }])
  assert.equal(doc.components.securitySchemes?.mqttUserPassword?.type, 'userPassword')
})

test('the WebSocket server is named by the request\'s Host; a Host that is no host name is ignored', async (t) => {
  const broker = await startBroker(t)
  const named = JSON.parse((await get(httpUrl(broker, '/api/asyncapi'), { host: 'events.example.org:8443' })).body) as AsyncApiJson
  assert.equal(named.servers.ws?.host, 'events.example.org:8443')
  assert.equal(named.servers.mqtt?.host, `127.0.0.1:${broker.ports.mqtt}`, 'MQTT keeps its configured address')
  const forged = JSON.parse((await get(httpUrl(broker, '/api/asyncapi'), { host: 'evil.example/x?y' })).body) as AsyncApiJson
  assert.equal(forged.servers.ws?.host, `127.0.0.1:${broker.ports.http}`)
  // a wildcard address is no address to connect to: the request's host name stands for it
  const wildcard = describeListeners({ mqtt: { host: '0.0.0.0', port: 0 }, http: { host: '::', port: 0 } }, { mqtt: 41883, http: 48080 }, { host: 'broker.example:8080', protocol: 'http' }, { credentials: false, anonymous: true })
  assert.deepEqual([wildcard.servers.mqtt?.host, wildcard.servers.ws?.host, wildcard.httpBase], ['broker.example:41883', 'broker.example:8080', 'http://broker.example:8080'])
})

test('a type seen published without a schema has its channel too, its data unchecked', async (t) => {
  const broker = await startBroker(t, { validation: { rules: [{ match: 'albergue/#', cloudevents: true, schema: 'optional', onInvalid: 'dlq' }] } })
  const publisher = await connect(t, mqttUrl(broker), { clientId: 'maintenance-service' })
  await publisher.publishAsync('albergue/v9/bed/painted', JSON.stringify(bookingReserved({}, { type: 'albergue.v9.bed.painted' })), { qos: 1 })
  const text = await (await fetch(httpUrl(broker, '/api/asyncapi'))).text()
  assert.deepEqual(await problemsOf(new Parser(), text), [])
  const doc = JSON.parse(text) as AsyncApiJson
  assert.equal(Object.values(doc.channels).find((c) => c.title === 'albergue.v9.bed.painted')?.address, 'albergue/v9/bed/painted')
  const send = operationsOf(doc, 'albergue.v9.bed.painted').find((op) => op.action === 'send')
  assert.deepEqual((send?.['x-publishers-seen'] as Array<{ publisher: string }> | undefined)?.map((p) => p.publisher), ['maintenance-service'])
  const valid = payloadValidator(doc, 'albergue.v9.bed.painted')
  assert.equal(valid(bookingReserved({ anything: ['goes'] }, { type: 'albergue.v9.bed.painted' })), true)
  assert.equal(valid(bookingReserved({}, { type: 'albergue.v9.bed.painted', specversion: '0.3' })), false, 'the envelope is still checked')
  assert.equal(doc.components.schemas['albergue.v9.bed.painted'], undefined)
})

test('schemas bundled into the document: $refs by $id, nested $id, anchor and file name become pointers; data inside const is left alone; an unknown $ref is never fetched', () => {
  const definitions = [{ file: '_shared.json', schema: { $id: 'https://example.test/s/shared.json', $defs: { id: { type: 'string' }, code: { $ref: '#/$defs/id' } } } }]
  const types = [
    { type: 'a.created', file: 'a.created.json', schema: { $id: 'https://example.test/s/a.json', properties: { id: { $ref: 'shared.json#/$defs/code' }, b: { $ref: 'b.json' }, c: { $ref: '#inner' }, d: { $id: 'nested.json', $defs: { 'x/y~z': { type: 'integer' } }, properties: { n: { $ref: '#/$defs/x~1y~0z' } } }, e: { const: { $ref: 'not-a-ref' } }, f: { $ref: 'https://elsewhere.test/x.json' }, g: { $ref: 'w.json' }, 'we/ird': { $id: 'w.json', type: 'null' } }, $defs: { inner: { $anchor: 'inner', type: 'boolean' } } } },
    { type: 'b.created', file: 'b.created.json', schema: { $id: 'https://example.test/s/b.json', type: 'object' } },
    { type: 'c.created', file: 'c.created.json', schema: { properties: { d: { $ref: 'd.created.json' }, a: { $ref: 'a.created.json' } } } },
    { type: 'd.created', file: 'd.created.json', schema: { type: 'string' } }
  ]
  const { refs, components } = bundleSchemas(types, definitions)
  assert.deepEqual([...refs.keys()], ['a.created', 'b.created', 'c.created', 'd.created'])
  assert.equal(refs.get('b.created'), '#/components/schemas/b.created')
  assert.deepEqual(Object.keys(components), ['_shared', 'a.created', 'b.created', 'c.created', 'd.created'], 'the definitions reached, and every type')
  const a = components['a.created'] as { $id?: string, properties: Record<string, Record<string, unknown>> }
  assert.equal(a.$id, undefined)
  assert.deepEqual(a.properties.id, { $ref: '#/components/schemas/_shared/$defs/code' })
  assert.deepEqual(a.properties.b, { $ref: '#/components/schemas/b.created' })
  assert.deepEqual(a.properties.c, { $ref: '#/components/schemas/a.created/$defs/inner' })
  assert.deepEqual(a.properties.d?.properties, { n: { $ref: '#/components/schemas/a.created/properties/d/$defs/x~1y~0z' } })
  assert.deepEqual(a.properties.e, { const: { $ref: 'not-a-ref' } })
  assert.deepEqual(a.properties.f, { 'x-unresolved-ref': 'https://elsewhere.test/x.json' })
  assert.deepEqual(a.properties.g, { $ref: '#/components/schemas/a.created/properties/we~1ird' })
  assert.deepEqual((components._shared as { $defs: Record<string, unknown> }).$defs.code, { $ref: '#/components/schemas/_shared/$defs/id' })
  const c = components['c.created'] as { properties: Record<string, unknown> }
  assert.deepEqual(c.properties.d, { $ref: '#/components/schemas/d.created' }, 'a schema without $id is found by its file name')
  assert.deepEqual(c.properties.a, { 'x-unresolved-ref': 'a.created.json' }, 'one with an $id only by it, as the registry finds it')
  assert.equal((types[0]?.schema as { $id?: string }).$id, 'https://example.test/s/a.json', 'the registry\'s own schema is not touched')
})
