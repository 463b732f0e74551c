import assert from 'node:assert/strict'
import { test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { connect, httpUrl, mqttUrl, sample, startBroker, subscribeGranted } from '../helpers/broker.js'
import { redisUnavailable, startRedis } from '../helpers/redis.js'

const skip = redisUnavailable() ?? false

test('a client cannot forge a shared subscription member route ($share-member/...) by an ordinary SUBSCRIBE: no phantom group on the other nodes, none counted against their limits.maxSharedGroups', { skip }, async (t) => {
  const redis = await startRedis(t)
  const a = await startBroker(t, { redis: { url: redis.url }, nodeId: 'node-a' })
  const b = await startBroker(t, { redis: { url: redis.url }, nodeId: 'node-b', limits: { maxSharedGroups: 1 } })
  const attacker = await connect(t, mqttUrl(a), { clientId: 'attacker' })
  // an ordinary subscription: node A announces its filter as a route, which node B reads as a member of group "ghost" on node A
  await subscribeGranted(attacker, ['$share-member/ghost/nobody/t'], 1)

  // once node B believes in the phantom member it sends it messages on topic t: node A counts them unrouted for "ghost"
  const publisher = await connect(t, mqttUrl(b))
  for (let i = 0; i < 100; i++) {
    await publisher.publishAsync('t', String(i), { qos: 1 })
    const metrics = await (await fetch(httpUrl(a, '/metrics'))).text()
    if (sample(metrics, 'ce_broker_shared_unrouted_total', { group: 'ghost' }) !== undefined) break
    await sleep(50)
  }

  const worker = await connect(t, mqttUrl(b))
  assert.deepEqual(await subscribeGranted(worker, ['$share/real/t'], 1), [1], 'node B refused its first own group: a forged route took its limits.maxSharedGroups')
})
