import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { fileURLToPath } from 'node:url'
import { SignJWT, exportJWK, generateKeyPair } from 'jose'
import mqtt, { type IClientOptions } from 'mqtt'
import { covers, hashPassword, verifyPassword } from '../../plugins/auth/index.js'
import type { BrokerInput } from '../../src/index.js'
import { collectMessages, connect, httpUrl, mqttUrl, nextMessage, sample, startBroker, subscribeGranted } from '../helpers/broker.js'
import { defer } from '../helpers/cleanup.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved } from '../helpers/events.js'
import { redisUnavailable, startRedis } from '../helpers/redis.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const JWT_SECRET = 'a-secret-of-the-dashboard-host-app-32+chars'

/** Hashes are made once: each costs a real scrypt. */
const hashes = {
  booking: await hashPassword('booking-pass', 10),
  notification: await hashPassword('notification-pass', 10),
  security: await hashPassword('security-pass', 10),
  device: await hashPassword('device-pass', 10)
}

/** The albergue example of the README: who may do what (the `anonymous` rule only where anonymous clients may connect: elsewhere it stops start-up). */
function albergueAuth (extra: Partial<NonNullable<BrokerInput['auth']>> = {}): NonNullable<BrokerInput['auth']> {
  const anonymous = extra.allowAnonymous === true ? [{ role: 'anonymous', publish: [], subscribe: ['public/#'] }] : []
  return {
    users: [
      { username: 'booking-service', password: hashes.booking, roles: ['publisher'] },
      { username: 'notification-service', password: hashes.notification, roles: ['reader'] },
      { username: 'security-service', password: hashes.security, roles: ['auditor'] },
      { username: 'device-7', password: hashes.device, roles: ['device'] }
    ],
    acl: [
      { role: 'publisher', publish: ['albergue/v1/booking/#'], subscribe: [] },
      { user: 'booking-service', publish: ['albergue/v1/payment/#'], subscribe: [] },
      { role: 'reader', publish: [], subscribe: ['albergue/#'] },
      { role: 'auditor', publish: [], subscribe: ['$audit/#', '#'] },
      { role: 'device', publish: ['devices/%c/#'], subscribe: ['users/%u/#'] },
      ...anonymous
    ],
    ...extra
  }
}

/** The CONNACK return code of a refused connection (the mqtt client rejects with it as `code`). */
async function refusal (url: string, options: IClientOptions): Promise<number> {
  try {
    const client = await mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5_000, ...options })
    await client.endAsync(true)
  } catch (err: unknown) {
    const code = typeof err === 'object' && err !== null && 'code' in err ? err.code : undefined
    if (typeof code === 'number') return code
    throw err
  }
  throw new Error(`${String(options.username)} was let in`)
}

async function tempDir (t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ce-broker-auth-'))
  defer(t, async () => { await rm(dir, { recursive: true, force: true }) })
  return dir
}

test('users: the right password connects; a wrong one or an unknown user gets CONNACK 4, no credentials 5', async (t) => {
  const broker = await startBroker(t, { auth: albergueAuth() })
  const url = mqttUrl(broker)
  const client = await connect(t, url, { username: 'booking-service', password: 'booking-pass' })
  assert.equal(client.connected, true)
  assert.equal(await refusal(url, { username: 'booking-service', password: 'wrong' }), 4)
  assert.equal(await refusal(url, { username: 'nobody', password: 'booking-pass' }), 4)
  assert.equal(await refusal(url, {}), 5)
  const metrics = await broker.metrics.metrics()
  assert.equal(sample(metrics, 'ce_broker_auth_refusals_total', { reason: 'bad_credentials' }), 2)
  assert.equal(sample(metrics, 'ce_broker_auth_refusals_total', { reason: 'no_credentials' }), 1)
})

test('allowAnonymous lets clients without credentials in with the anonymous role\'s grants only', async (t) => {
  const broker = await startBroker(t, { auth: albergueAuth({ allowAnonymous: true }) })
  const anonymous = await connect(t, mqttUrl(broker))
  assert.deepEqual(await subscribeGranted(anonymous, ['public/#'], 0), [0])
  assert.deepEqual(await subscribeGranted(anonymous, ['albergue/#'], 0), [128])
  assert.equal(await refusal(mqttUrl(broker), { username: 'booking-service', password: 'wrong' }), 4, 'a wrong password is still refused')
})

test('a publish the ACL does not grant reaches no one, is told on $rejections/<clientId> and audited, and the publisher stays connected', async (t) => {
  const file = join(await tempDir(t), 'audit.jsonl')
  const broker = await startBroker(t, {
    auth: albergueAuth({ users: [{ username: 'payments-only', password: hashes.booking, roles: [] }, ...(albergueAuth().users ?? [])] }),
    audit: { file }
  })
  const url = mqttUrl(broker)
  const reader = await connect(t, url, { username: 'notification-service', password: 'notification-pass' })
  await reader.subscribeAsync('albergue/#', { qos: 1 })
  const publisher = await connect(t, url, { username: 'payments-only', password: 'booking-pass', clientId: 'payments-only-1' })
  assert.deepEqual((await publisher.subscribeAsync('$rejections/payments-only-1', { qos: 1 })).map((g) => g.qos), [1], 'its own rejections are always readable')

  const refused = bookingReserved()
  const told = nextMessage(publisher, '$rejections/payments-only-1')
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(refused), { qos: 1 })
  const record = JSON.parse((await told).payload.toString()) as { data: { reason: string, topic: string, clientId: string, payload: unknown } }
  assert.deepEqual([record.data.reason, record.data.topic, record.data.clientId], ['not_authorized', BOOKING_RESERVED_TOPIC, 'payments-only-1'])
  assert.deepEqual(record.data.payload, refused)
  assert.equal(publisher.connected, true)

  // a granted publish afterwards is the first thing the reader gets
  const booking = await connect(t, url, { username: 'booking-service', password: 'booking-pass' })
  const granted = bookingReserved()
  const arrived = collectMessages(reader, 1)
  await booking.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(granted), { qos: 1 })
  assert.equal(JSON.parse((await arrived)[0]?.payload.toString() ?? '{}').id, granted.id)

  const deadLetters = await (await fetch(httpUrl(broker, '/api/dlq'))).json() as { items: unknown[] }
  assert.deepEqual(deadLetters.items, [], 'nothing to replay: not dead-lettered')
  await broker.close()
  const metrics = await broker.metrics.metrics()
  assert.equal(sample(metrics, 'ce_broker_acl_denials_total', { action: 'publish' }), 1)
  assert.equal(sample(metrics, 'ce_broker_events_total', { outcome: 'rejected', reason: 'not_authorized' }), 1)
  const lines = (await readFile(file, 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>)
  assert.deepEqual(lines.map((l) => [l.outcome, l.reason, l.username, l.clientId]), [
    ['rejected', 'not_authorized', 'payments-only', 'payments-only-1'],
    ['accepted', undefined, 'booking-service', lines[1]?.clientId]
  ])
})

test('subscriptions: granted filters and what they cover; $ topics need their own grant; refusals are SUBACK 0x80 and the client stays', async (t) => {
  const broker = await startBroker(t, { auth: albergueAuth() })
  const url = mqttUrl(broker)
  const reader = await connect(t, url, { username: 'notification-service', password: 'notification-pass' })
  const granted = async (client: typeof reader, filter: string): Promise<number | undefined> => (await subscribeGranted(client, [filter], 0))[0]
  assert.equal(await granted(reader, 'albergue/#'), 0)
  assert.equal(await granted(reader, 'albergue/v1/+/reserved'), 0, 'narrower than the grant')
  assert.equal(await granted(reader, '#'), 128, 'wider than the grant')
  assert.equal(await granted(reader, '$audit/#'), 128)
  assert.equal(await granted(reader, '$DLQ/albergue/#'), 128)
  assert.equal(reader.connected, true)

  const security = await connect(t, url, { username: 'security-service', password: 'security-pass' })
  assert.equal(await granted(security, '$audit/#'), 0, 'an explicit $audit grant')
  assert.equal(await granted(security, '$DLQ/#'), 128, 'a # grant does not reach $ topics')
  assert.equal(await granted(security, 'albergue/#'), 0)
  const metrics = await broker.metrics.metrics()
  assert.equal(sample(metrics, 'ce_broker_acl_denials_total', { action: 'subscribe' }), 4)
})

test('%u and %c in a rule stand for the user name and the client id', async (t) => {
  const broker = await startBroker(t, { auth: albergueAuth() })
  const url = mqttUrl(broker)
  const device = await connect(t, url, { username: 'device-7', password: 'device-pass', clientId: 'door-3' })
  assert.equal((await subscribeGranted(device, ['users/device-7/inbox'], 0))[0], 0)
  assert.equal((await subscribeGranted(device, ['users/device-8/inbox'], 0))[0], 128)
  await device.subscribeAsync('$rejections/door-3', { qos: 1 })
  // its own client id's topics are granted; another's are not, and say so
  const told = nextMessage(device, '$rejections/door-3')
  await device.publishAsync('devices/door-3/state', 'open', { qos: 1 })
  await device.publishAsync('devices/door-4/state', 'open', { qos: 1 })
  const record = JSON.parse((await told).payload.toString()) as { data: { reason: string, topic: string } }
  assert.deepEqual([record.data.reason, record.data.topic], ['not_authorized', 'devices/door-4/state'])
  const metrics = await broker.metrics.metrics()
  assert.equal(sample(metrics, 'ce_broker_acl_denials_total', { action: 'publish' }), 1)
})

test('failed logins from one address are limited: past the maximum even the right password is refused, and each refusal is audited', async (t) => {
  const file = join(await tempDir(t), 'audit.jsonl')
  const broker = await startBroker(t, { auth: albergueAuth({ loginFailures: { max: 2, windowMs: 60_000 } }), audit: { file } })
  const url = mqttUrl(broker)
  assert.equal(await refusal(url, { username: 'booking-service', password: 'guess-1', clientId: 'intruder' }), 4)
  assert.equal(await refusal(url, { username: 'booking-service', password: 'guess-2', clientId: 'intruder' }), 4)
  assert.equal(await refusal(url, { username: 'booking-service', password: 'booking-pass', clientId: 'intruder' }), 5)
  await broker.close()
  const lines = (await readFile(file, 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>)
  assert.deepEqual(lines.map((l) => [l.outcome, l.reason, l.returnCode, l.username, l.clientId, l.remoteAddress]), [
    ['refused', 'bad_credentials', 4, 'booking-service', 'intruder', '127.0.0.1'],
    ['refused', 'bad_credentials', 4, 'booking-service', 'intruder', '127.0.0.1'],
    ['refused', 'rate_limited', 5, 'booking-service', 'intruder', '127.0.0.1']
  ])
  assert.equal(sample(await broker.metrics.metrics(), 'ce_broker_auth_refusals_total', { reason: 'rate_limited' }), 1)
})

test('JWT passwords: an HS256 token names the user and its roles; a bad signature, an expired token or another user name gets CONNACK 4', async (t) => {
  const broker = await startBroker(t, { auth: albergueAuth({ jwt: { secret: JWT_SECRET, issuer: 'albergue-dashboard' } }) })
  const url = mqttUrl(broker)
  const key = new TextEncoder().encode(JWT_SECRET)
  const token = async (claims: Record<string, unknown>, expires = '5m', signingKey = key): Promise<string> =>
    await new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuer('albergue-dashboard').setIssuedAt().setExpirationTime(expires).sign(signingKey)

  const dashboard = await connect(t, url, { username: 'dash-1', password: await token({ sub: 'dash-1', roles: ['reader'] }) })
  assert.equal((await subscribeGranted(dashboard, ['albergue/#'], 0))[0], 0, 'the reader role from the token')
  assert.equal((await subscribeGranted(dashboard, ['$audit/#'], 0))[0], 128)
  // MQTT 3.1.1 sends no password without a user name [MQTT-3.1.2-22]: an empty one lets the token say who it is
  await connect(t, url, { username: '', password: await token({ sub: 'dash-2', roles: 'reader' }) })

  assert.equal(await refusal(url, { username: 'dash-1', password: await token({ sub: 'dash-1' }, '5m', new TextEncoder().encode('another-secret-that-is-long-enough!!')) }), 4)
  assert.equal(await refusal(url, { username: 'dash-1', password: await token({ sub: 'dash-1' }, '-1m') }), 4)
  assert.equal(await refusal(url, { username: 'booking-service', password: await token({ sub: 'dash-1' }) }), 4, 'a configured user checks its password, never a token')
  assert.equal(await refusal(url, { username: 'dash-9', password: await token({ sub: 'dash-1' }) }), 4, 'the token is somebody else\'s')
})

test('JWT passwords checked against the public keys of a JWKS file', async (t) => {
  const dir = await tempDir(t)
  const { publicKey, privateKey } = await generateKeyPair('ES256')
  const jwksFile = join(dir, 'jwks.json')
  await writeFile(jwksFile, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' }] }))
  const broker = await startBroker(t, { auth: { jwt: { jwksFile }, acl: [{ role: 'reader', publish: [], subscribe: ['albergue/#'] }] } })
  const token = await new SignJWT({ sub: 'dash-3', roles: ['reader'] }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setExpirationTime('5m').sign(privateKey)
  const dashboard = await connect(t, mqttUrl(broker), { username: 'dash-3', password: token })
  assert.equal((await subscribeGranted(dashboard, ['albergue/#'], 0))[0], 0)
  assert.equal(await refusal(mqttUrl(broker), {}), 5, 'a JWT configuration alone requires credentials')
})

test('a plain password, a rule naming no role or user, and a bad filter stop start-up, naming where', async (t) => {
  await assert.rejects(startBroker(t, { auth: { users: [{ username: 'u', password: 'plain-text', roles: [] }] } }), /auth\.users\.0\.password is not a password hash/)
  await assert.rejects(startBroker(t, { auth: { users: [{ username: 'u', password: hashes.device, roles: [] }], acl: [{ publish: [], subscribe: [] }] } }), /auth\.acl\.0 must name either a role or a user/)
  await assert.rejects(startBroker(t, { auth: { users: [{ username: 'u', password: hashes.device, roles: [] }], acl: [{ role: 'r', publish: ['a/#/b'], subscribe: [] }] } }), /auth\.acl\.0\.publish\.0 "#" must be a whole level and the last one/)
})

test('ce-broker hash-password prints a hash of the first line of stdin that verifies', async () => {
  const run = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'hash-password'], { cwd: ROOT, input: 'pilgrim-secret\n', encoding: 'utf8' })
  assert.equal(run.status, 0, run.stderr)
  const hash = run.stdout.trim()
  assert.match(hash, /^\$scrypt\$ln=15,r=8,p=1\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/)
  assert.equal(await verifyPassword('pilgrim-secret', hash), true)
  assert.equal(await verifyPassword('pilgrim-secret\n', hash), false)
})

test('a granted filter covers what it matches in full, and nothing of $ topics unless it names them', () => {
  const table: Array<[string, string, boolean]> = [
    ['albergue/#', 'albergue/#', true],
    ['albergue/#', 'albergue', true],
    ['albergue/#', 'albergue/v1/+/reserved', true],
    ['albergue/+/booking', 'albergue/v1/booking', true],
    ['albergue/+/booking', 'albergue/+/booking', true],
    ['albergue/+/booking', 'albergue/#', false],
    ['albergue/v1', 'albergue/+', false],
    ['albergue/v1', 'albergue/v1/x', false],
    ['#', 'anything/at/all', true],
    ['#', '$audit/#', false],
    ['+/x', '$SYS/x', false],
    ['$audit/#', '$audit/albergue/#', true],
    ['$audit/#', '$DLQ/#', false]
  ]
  for (const [granted, asked, expected] of table) assert.equal(covers(granted, asked), expected, `${granted} covers ${asked}`)
})

test('a client id belongs to the user that used it: another user may not take it over or resume its session', async (t) => {
  const broker = await startBroker(t, { auth: albergueAuth() })
  const url = mqttUrl(broker)
  const owner = await connect(t, url, { username: 'device-7', password: 'device-pass', clientId: 'door-9', clean: false })
  await owner.endAsync()
  assert.equal(await refusal(url, { username: 'booking-service', password: 'booking-pass', clientId: 'door-9', clean: false }), 2)
  const back = await connect(t, url, { username: 'device-7', password: 'device-pass', clientId: 'door-9', clean: false })
  assert.equal(back.connected, true, 'its own user may come back')
  assert.equal(sample(await broker.metrics.metrics(), 'ce_broker_auth_refusals_total', { reason: 'client_id_taken' }), 1)
})

test('a will whose topic the user may not publish to is refused at CONNECT (CONNACK 5): it could be published later by any node', async (t) => {
  const broker = await startBroker(t, { auth: albergueAuth() })
  const url = mqttUrl(broker)
  await connect(t, url, { username: 'booking-service', password: 'booking-pass', will: { topic: 'albergue/v1/booking/offline', payload: Buffer.from('gone'), qos: 0, retain: false } })
  assert.equal(await refusal(url, { username: 'booking-service', password: 'booking-pass', will: { topic: 'albergue/v1/pilgrim/registered', payload: Buffer.from('x'), qos: 0, retain: false } }), 5)
})

test('parallel guesses from one address cannot all be checked: past the limit they wait their turn (CONNACK 3) or are refused', async (t) => {
  const broker = await startBroker(t, { auth: albergueAuth({ loginFailures: { max: 3, windowMs: 60_000 } }) })
  const codes = await Promise.all(Array.from({ length: 20 }, async (_, i) => await refusal(mqttUrl(broker), { username: 'booking-service', password: `guess-${i}` })))
  assert.ok(codes.filter((c) => c === 4).length <= 3, `at most 3 passwords checked, got ${JSON.stringify(codes)}`)
  assert.ok(codes.every((c) => c === 3 || c === 4 || c === 5), JSON.stringify(codes))
})

test('a JWT without exp, or naming a configured user, is refused', async (t) => {
  const broker = await startBroker(t, { auth: albergueAuth({ jwt: { secret: JWT_SECRET } }) })
  const key = new TextEncoder().encode(JWT_SECRET)
  const forever = await new SignJWT({ sub: 'dash-9', roles: ['reader'] }).setProtectedHeader({ alg: 'HS256' }).sign(key)
  assert.equal(await refusal(mqttUrl(broker), { username: 'dash-9', password: forever }), 4)
  const impostor = await new SignJWT({ sub: 'booking-service' }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('5m').sign(key)
  assert.equal(await refusal(mqttUrl(broker), { username: '', password: impostor }), 4)
})

test('with Redis the nodes share failed logins and client-id owners: a second node is no way around either', { skip: redisUnavailable() ?? false }, async (t) => {
  const redis = await startRedis(t)
  const config = { auth: albergueAuth({ loginFailures: { max: 2, windowMs: 60_000 } }), redis: { url: redis.url } }
  const a = await startBroker(t, { ...config, nodeId: 'node-a' })
  const b = await startBroker(t, { ...config, nodeId: 'node-b' })

  const owner = await connect(t, mqttUrl(a), { username: 'device-7', password: 'device-pass', clientId: 'door-9', clean: false })
  assert.equal(await refusal(mqttUrl(b), { username: 'booking-service', password: 'booking-pass', clientId: 'door-9' }), 2, 'the id is device-7\'s on node b too')
  assert.equal(owner.connected, true, 'and its session was not taken over')

  assert.equal(await refusal(mqttUrl(a), { username: 'booking-service', password: 'guess-1', clientId: 'intruder' }), 4)
  assert.equal(await refusal(mqttUrl(b), { username: 'booking-service', password: 'guess-2', clientId: 'intruder' }), 4)
  assert.equal(await refusal(mqttUrl(a), { username: 'booking-service', password: 'booking-pass', clientId: 'intruder' }), 5, 'two failures, one on each node, reach the limit of 2')
  assert.equal(await refusal(mqttUrl(b), { username: 'booking-service', password: 'booking-pass', clientId: 'intruder' }), 5)
})
