import assert from 'node:assert/strict'
import { test } from 'node:test'
import { httpUrl } from '../helpers/broker.js'
import { redisUnavailable, startRedis } from '../helpers/redis.js'

const skip = redisUnavailable() ?? false

test('when Redis dies /readyz turns 503 naming redis, and close() still finishes', { skip }, async (t) => {
  const redis = await startRedis(t)
  const { createBroker } = await import('../../src/index.js')
  const broker = await createBroker({ mqtt: { port: 0 }, http: { port: 0 }, logLevel: 'silent', redis: { url: redis.url } })
  await redis.kill()
  // poll until the broker has noticed: readiness is what a load balancer polls too
  let body: unknown
  for (let i = 0; i < 100; i++) {
    const res = await fetch(httpUrl(broker, '/readyz'))
    body = await res.json()
    if (res.status === 503) break
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  assert.deepEqual(body, { status: 'not_ready', checks: { listeners: true, redis: false } })
  await broker.close()
})
