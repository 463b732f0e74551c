import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { hashApiKey, newApiKey } from '../../src/index.js'
import { httpUrl, startBroker } from '../helpers/broker.js'
import { bookingReserved } from '../helpers/events.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const keys = { publish: newApiKey(), read: newApiKey(), admin: newApiKey() }
const apiKeys = [
  { id: 'gateway', key: keys.publish.hash, scopes: ['publish' as const] },
  { id: 'grafana', key: keys.read.hash, scopes: ['read' as const] },
  { id: 'ops', key: keys.admin.hash, scopes: ['admin' as const, 'read' as const] }
]

async function call (url: string, key: string | undefined, init: RequestInit = {}): Promise<{ status: number, body: { error?: { code: string, message: string } }, authenticate: string | null }> {
  const res = await fetch(url, { ...init, headers: { ...(init.headers as Record<string, string> | undefined), ...(key === undefined ? {} : { authorization: `Bearer ${key}` }) } })
  const text = await res.text()
  return { status: res.status, body: text.startsWith('{') ? JSON.parse(text) as { error?: { code: string, message: string } } : {}, authenticate: res.headers.get('www-authenticate') }
}

test('once API keys exist, each route needs a key with its scope: 401 without one or with an unknown one, 403 with the wrong scope', async (t) => {
  const broker = await startBroker(t, { auth: { apiKeys } })
  const event = (): RequestInit => ({ method: 'POST', headers: { 'content-type': 'application/cloudevents+json' }, body: JSON.stringify(bookingReserved()) })

  for (const path of ['/healthz', '/readyz', '/api/mqtt/health']) assert.equal((await call(httpUrl(broker, path), undefined)).status, 200, `${path} is public`)

  const anonymous = await call(httpUrl(broker, '/api/events'), undefined, event())
  assert.equal(anonymous.status, 401)
  assert.equal(anonymous.body.error?.code, 'unauthorized')
  assert.equal(anonymous.authenticate, 'Bearer')
  assert.equal((await call(httpUrl(broker, '/api/events'), 'ceb_not-a-key', event())).status, 401)
  const wrongScope = await call(httpUrl(broker, '/api/events'), keys.read.key, event())
  assert.equal(wrongScope.status, 403)
  assert.equal(wrongScope.body.error?.code, 'forbidden')
  assert.match(wrongScope.body.error?.message ?? '', /API key "grafana" .* needs "publish"/)
  assert.equal((await call(httpUrl(broker, '/api/events'), keys.publish.key, event())).status, 202)

  assert.equal((await call(httpUrl(broker, '/metrics'), undefined)).status, 401)
  assert.equal((await call(httpUrl(broker, '/metrics'), keys.read.key)).status, 200)
  assert.equal((await call(httpUrl(broker, '/api/dlq'), keys.publish.key)).status, 403)
  assert.equal((await call(httpUrl(broker, '/api/dlq'), keys.read.key)).status, 200)

  const subscription = { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ service_id: 'ops', webhook_url: 'http://127.0.0.1:9/hooks', topic_filters: ['albergue/#'] }) }
  assert.equal((await call(httpUrl(broker, '/api/webhooks'), keys.read.key, subscription)).status, 403)
  assert.equal((await call(httpUrl(broker, '/api/webhooks'), keys.admin.key, subscription)).status, 201)
  assert.equal((await call(httpUrl(broker, '/api/webhooks'), keys.admin.key)).status, 200)
})

test('http.publicMetrics serves /metrics without a key while the rest still needs one', async (t) => {
  const broker = await startBroker(t, { auth: { apiKeys }, http: { publicMetrics: true } })
  assert.equal((await call(httpUrl(broker, '/metrics'), undefined)).status, 200)
  assert.equal((await call(httpUrl(broker, '/api/schemas'), undefined)).status, 401)
})

test('ce-broker new-api-key prints a key and the hash that goes in the config', () => {
  const run = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'new-api-key'], { cwd: ROOT, encoding: 'utf8' })
  assert.equal(run.status, 0, run.stderr)
  const printed = JSON.parse(run.stdout) as { key: string, hash: string }
  assert.match(printed.key, /^ceb_[A-Za-z0-9_-]{43}$/)
  assert.equal(printed.hash, hashApiKey(printed.key))
})
