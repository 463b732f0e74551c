import assert from 'node:assert/strict'
import { test } from 'node:test'
import { httpUrl, startBroker } from '../helpers/broker.js'
import { receiver } from '../helpers/receiver.js'

async function register (url: string, body: object): Promise<{ status: number, json: unknown }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  return { status: res.status, json: await res.json() }
}

for (const path of ['/api/webhooks', '/api/mqtt/register-webhook']) {
  test(`POST ${path}: a key the subscription may not have is a 400 naming it, and nothing is registered`, async (t) => {
    const broker = await startBroker(t)
    const hook = await receiver(t)
    const valid = { service_id: 'notification', webhook_url: hook.url, topic_filters: ['albergue.v1.booking.*'] }

    // asks for something the broker cannot do: before, it was dropped and answered 201
    assert.deepEqual(await register(httpUrl(broker, path), { ...valid, filter_expression: 'data.nights > 1' }), {
      status: 400,
      json: { error: { code: 'bad_request', message: 'filter_expression is not a known key; known keys: service_id, webhook_url, topic_filters, secret, mode, retry, timeoutMs, ordering, handshake, filters' } }
    })
    assert.deepEqual(await register(httpUrl(broker, path), { ...valid, retry: { maxAttempts: 3, maxAtempts: 5 } }), {
      status: 400,
      json: { error: { code: 'bad_request', message: 'retry.maxAtempts is not a known key; known keys: maxAttempts, initialDelayMs, maxDelayMs' } }
    })
    const listed = await (await fetch(httpUrl(broker, '/api/webhooks'))).json() as { subscriptions: unknown[] }
    assert.deepEqual(listed.subscriptions, [])

    // the same body without the unknown key is registered
    assert.equal((await register(httpUrl(broker, path), { ...valid, retry: { maxAttempts: 3 } })).status, 201)
  })
}
