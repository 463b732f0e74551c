import assert from 'node:assert/strict'
import { test } from 'node:test'
import { connect, mqttUrl, nextMessage } from '../helpers/broker.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved, parseRecord } from '../helpers/events.js'
import { listenOn, receiver } from '../helpers/receiver.js'
import { rebindingResolver, startBrokerResolving } from '../helpers/rebinding.js'


test('a name that answers an allowed address at registration and a denied one at delivery is refused when connecting: dead-lettered after one attempt, other subscriptions delivered', async (t) => {
  // 127.0.0.2 stands for the metadata service: denied, yet really reachable, so without the connect-time check the request would land
  const metadata = await listenOn(t, '127.0.0.2')
  const allowed = await receiver(t)
  const { resolve, asked } = rebindingResolver('127.0.0.1', '127.0.0.2')
  const { broker, registry } = await startBrokerResolving(t, {
    denyNetworks: ['127.0.0.2/32'],
    resolve,
    subscriptions: [
      { service_id: 'rebinder', webhook_url: `http://rebind.test:${metadata.port}/hooks`, topic_filters: ['albergue/#'] },
      { service_id: 'honest', webhook_url: allowed.url, topic_filters: ['albergue/#'] }
    ]
  })
  assert.deepEqual(asked, ['rebind.test'], 'registration resolved the name once, to 127.0.0.1')
  const rebinder = registry.store.list().find((s) => s.service_id === 'rebinder')
  assert.ok(rebinder !== undefined)

  const watcher = await connect(t, mqttUrl(broker))
  await watcher.subscribeAsync('$DLQ/#', { qos: 1 })
  const dead = nextMessage(watcher, `$DLQ/${BOOKING_RESERVED_TOPIC}`, 10_000)
  const publisher = await connect(t, mqttUrl(broker))
  const event = bookingReserved()
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })

  const [delivered] = await allowed.next(1)
  assert.equal(delivered?.headers['ce-id'], event.id, 'the allowed subscription got its event')
  const record = parseRecord((await dead).payload).data
  assert.equal(record.reason, 'delivery_failed')
  assert.equal(record.subscription, rebinder.id)
  assert.equal(record.attempts, 1, 'a refused connection is not retried')
  assert.equal(record.lastStatus, undefined)
  assert.match(record.errors[0]?.message ?? '', /rebind\.test resolved to 127\.0\.0\.2, which is in a denied network \(127\.0\.0\.2\/32\)/)
  assert.equal(metadata.hits(), 0, 'nothing reached the denied address')
  assert.deepEqual(asked, ['rebind.test', 'rebind.test'], 'one connection was tried at delivery')
})
