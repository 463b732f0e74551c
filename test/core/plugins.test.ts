import assert from 'node:assert/strict'
import { test } from 'node:test'
import { expectTypeOf } from 'expect-type'
import {
  BrokerError, ConnectRefusedError, PluginError, createBroker, definePlugin,
  type Disposition, type PluginEntry, type PublishAttempt
} from '../../src/index.js'
import { closed, connect, dataDirFor, mqttUrl, nextMessage, startBroker, subscribeGranted } from '../helpers/broker.js'
import { captureLogs } from '../helpers/logs.js'
import { freePort } from '../helpers/net.js'
import { rawConnect } from '../helpers/raw.js'

class TestRefusal extends BrokerError {
  readonly code = 'BRK_TEST_REFUSED'
  constructor (override readonly disposition: Disposition) {
    super(`refused with ${disposition}`)
  }
}

/** A plugin that records what it sees into `log` and refuses topics under `refuse/<disposition>/`. */
const recorder = definePlugin<{ tag: string, log: string[] }>('recorder', async (ctx, opts) => {
  opts.log.push(`${opts.tag}:setup`)
  ctx.hooks.authorizePublish(function recordPublish (attempt: PublishAttempt) {
    opts.log.push(`${opts.tag}:publish:${attempt.topic}`)
    const match = /^refuse\/(reject|dead-letter|discard)\//.exec(attempt.topic)
    if (match?.[1] === 'reject' || match?.[1] === 'dead-letter' || match?.[1] === 'discard') throw new TestRefusal(match[1])
  })
  return async () => { opts.log.push(`${opts.tag}:dispose`) }
})

test('plugins load in order, hooks run in that order, and dispose runs in reverse', async (t) => {
  const log: string[] = []
  const first = definePlugin<string[]>('first', async (ctx, out) => {
    out.push('first:setup')
    ctx.hooks.authorizePublish(async (attempt) => { out.push(`first:publish:${attempt.topic}`) })
    return async () => { out.push('first:dispose') }
  })
  const broker = await createBroker({ schemas: { dataDir: await dataDirFor(t) }, mqtt: { port: 0 }, http: { port: 0 }, logLevel: 'silent', plugins: [first(log), recorder({ tag: 'second', log })] })
  const client = await connect(t, mqttUrl(broker))
  await client.publishAsync('hostel/x', 'hi', { qos: 1 })
  await broker.close()
  assert.deepEqual(log, ['first:setup', 'second:setup', 'first:publish:hostel/x', 'second:publish:hostel/x', 'second:dispose', 'first:dispose'])
})

test('a dead-letter refusal diverts the publish to $DLQ/<topic>; the publisher is acked and stays connected', async (t) => {
  const log: string[] = []
  const broker = await startBroker(t, { plugins: [recorder({ tag: 'r', log })] })
  const watcher = await connect(t, mqttUrl(broker))
  await watcher.subscribeAsync('refuse/#', { qos: 1 })
  await watcher.subscribeAsync('$DLQ/#', { qos: 1 })
  const publisher = await connect(t, mqttUrl(broker))

  for (const qos of [1, 2] as const) {
    const diverted = nextMessage(watcher)
    await publisher.publishAsync('refuse/dead-letter/booking', `bad at qos ${qos}`, { qos, retain: true })
    const message = await diverted
    assert.equal(message.topic, '$DLQ/refuse/dead-letter/booking')
    assert.equal(message.retain, false)
  }
  assert.equal(publisher.connected, true)
  const retained = await (await fetch(`http://127.0.0.1:${broker.ports.http}/api/mqtt/retained/refuse%2F%23`)).json() as { messages: unknown[] }
  assert.deepEqual(retained.messages, [], 'a diverted publish is never retained under its original topic')
})

test('a discard refusal reaches nobody, and $DISCARD/ cannot be subscribed to', async (t) => {
  const broker = await startBroker(t, { plugins: [recorder({ tag: 'r', log: [] })] })
  const watcher = await connect(t, mqttUrl(broker))
  assert.deepEqual(await subscribeGranted(watcher, ['$DISCARD/#', 'refuse/#', 'probe']), [128, 1, 1])
  const first = nextMessage(watcher)
  const publisher = await connect(t, mqttUrl(broker))
  await publisher.publishAsync('refuse/discard/x', 'dropped', { qos: 1 })
  await publisher.publishAsync('probe', 'after', { qos: 1 })
  assert.equal((await first).topic, 'probe')
  assert.equal(publisher.connected, true)
})

test('a reject refusal disconnects the publisher', async (t) => {
  const broker = await startBroker(t, { plugins: [recorder({ tag: 'r', log: [] })] })
  const publisher = await connect(t, mqttUrl(broker))
  const gone = closed(publisher)
  publisher.publish('refuse/reject/x', 'no', { qos: 1 })
  await gone
})

test('broker.publish runs the same chain: a refusal rejects, and a diverted message is still moved', async (t) => {
  const log: string[] = []
  const broker = await startBroker(t, { plugins: [recorder({ tag: 'r', log })] })
  const watcher = await connect(t, mqttUrl(broker))
  await watcher.subscribeAsync('$DLQ/#', { qos: 1 })
  await assert.rejects(broker.publish({ topic: 'refuse/reject/x', payload: 'no' }), (err: unknown) => err instanceof TestRefusal)
  await assert.rejects(broker.publish({ topic: '$audit/forged', payload: 'no' }), { code: 'BRK_TOPIC_RESERVED' })
  const diverted = nextMessage(watcher)
  await assert.rejects(broker.publish({ topic: 'refuse/dead-letter/y', payload: 'bad', qos: 1 }), (err: unknown) => err instanceof TestRefusal)
  assert.equal((await diverted).topic, '$DLQ/refuse/dead-letter/y', 'refused, yet diverted as a client\'s publish would be')
  assert.deepEqual(log.filter((l) => l.startsWith('r:publish')), ['r:publish:refuse/reject/x', 'r:publish:refuse/dead-letter/y'])
})

test('authenticate, preConnect and authorizeSubscribe chains decide CONNACK codes and SUBACK 0x80', async (t) => {
  const gate = definePlugin('gate', async (ctx) => {
    ctx.hooks.preConnect((attempt) => { if (attempt.clientId === 'banned') throw new ConnectRefusedError(5, 'banned') })
    ctx.hooks.authenticate(async (attempt) => {
      if (attempt.username !== 'booking-service' || attempt.password?.toString() !== 'right') throw new ConnectRefusedError(4, 'bad credentials')
    })
    ctx.hooks.authorizeSubscribe((attempt) => { if (attempt.topic.startsWith('secret/')) throw new ConnectRefusedError(5, 'no') })
  })
  const broker = await startBroker(t, { plugins: [gate()] })
  await assert.rejects(connect(t, mqttUrl(broker), { username: 'booking-service', password: 'wrong' }), { code: 4 })
  const banned = await rawConnect(t, broker.ports.mqtt)
  banned.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'banned', clean: true, keepalive: 30, username: 'booking-service', password: Buffer.from('right') })
  assert.equal(await banned.next(), null, 'a preConnect refusal closes the socket without CONNACK')
  const ok = await connect(t, mqttUrl(broker), { username: 'booking-service', password: 'right' })
  assert.deepEqual(await subscribeGranted(ok, ['secret/x', 'public/x']), [128, 1])
  assert.equal(ok.connected, true)
})

test('a published handler that throws is reported; the publisher and later handlers carry on', async (t) => {
  const seen: string[] = []
  const faulty = definePlugin('faulty', async (ctx) => {
    ctx.hooks.published(function explode (message) { if (message.topic === 'boom') throw new Error('handler bug') })
    ctx.hooks.published(function note (message) { if (message.clientId !== null) seen.push(message.topic) })
  })
  const broker = await startBroker(t, { plugins: [faulty()] })
  const publisher = await connect(t, mqttUrl(broker))
  await publisher.publishAsync('boom', 'x', { qos: 1 })
  await publisher.publishAsync('fine', 'y', { qos: 1 })
  assert.deepEqual(seen, ['boom', 'fine'])
  assert.equal(publisher.connected, true)
  const errors = (await broker.metrics.getSingleMetric('ce_broker_errors_total')?.get())?.values
  assert.deepEqual(errors?.map((v) => [v.labels.component, v.value]), [['published', 1]])
})

test('a missing dependency, a failing setup and a slow setup stop start-up with a PluginError naming the plugin', async (t) => {
  const needy = definePlugin('needy', async () => undefined, { dependsOn: ['metering'] })
  await assert.rejects(createBroker({ schemas: { dataDir: await dataDirFor(t) }, mqtt: { port: 0 }, http: { port: 0 }, logLevel: 'silent', plugins: [needy()] }), (err: unknown) => {
    assert.ok(err instanceof PluginError)
    assert.match(err.message, /plugin "needy": depends on "metering"/)
    return true
  })
  const broken = definePlugin('broken', async () => { throw new Error('cannot open store') })
  await assert.rejects(createBroker({ schemas: { dataDir: await dataDirFor(t) }, mqtt: { port: 0 }, http: { port: 0 }, logLevel: 'silent', plugins: [broken()] }), /plugin "broken": setup failed: cannot open store/)
  const slow = definePlugin('slow', async () => { await new Promise((resolve) => setTimeout(resolve, 5_000).unref()) })
  // no validation rules: the built-in schema-validation plugin (and its worker threads) would need more than 50 ms
  await assert.rejects(createBroker({ mqtt: { port: 0 }, http: { port: 0 }, logLevel: 'silent', validation: { rules: [] }, pluginTimeoutMs: 50, plugins: [slow()] }), /plugin "slow": setup did not finish within 50 ms/)
})

test('a plugin whose stop never finishes is logged by name after pluginTimeoutMs, and the plugins loaded before it still stop', async () => {
  const stopped: string[] = []
  const first = definePlugin('first', async () => async () => { stopped.push('first') })
  const stuck = definePlugin('stuck', async () => async () => { await new Promise(() => {}) })
  const { logger, lines } = captureLogs('error')
  const broker = await createBroker({ mqtt: { port: 0 }, http: { port: 0 }, logger, validation: { rules: [] }, pluginTimeoutMs: 200, plugins: [first(), stuck()] })
  await broker.close()
  assert.deepEqual(stopped, ['first'])
  const line = lines.find((l) => l.phase === 'dispose')
  assert.equal(line?.plugin, 'stuck')
  assert.match(String((line?.err as { message?: string } | undefined)?.message), /plugin "stuck": stop did not finish within 200 ms/)
})

test('a failed start releases its ports: the same port can be bound again', async (t) => {
  const first = await startBroker(t)
  // the HTTP port is taken by `first`, so this start fails after binding its MQTT port
  const mqttPort = await freePort()
  await assert.rejects(createBroker({ schemas: { dataDir: await dataDirFor(t) }, mqtt: { port: mqttPort }, http: { port: first.ports.http }, logLevel: 'silent' }), /EADDRINUSE/)
  const again = await startBroker(t, { mqtt: { port: mqttPort } })
  assert.equal(again.ports.mqtt, mqttPort)
})

test('plugin option types are checked at compile time', () => {
  const typed = definePlugin<{ windowMs: number }>('typed', async () => undefined)
  expectTypeOf(typed).parameter(0).toEqualTypeOf<{ windowMs: number }>()
  expectTypeOf(typed({ windowMs: 1 })).toEqualTypeOf<PluginEntry>()
  // @ts-expect-error a string is not a number
  typed({ windowMs: '1' })
  const bare = definePlugin('bare', async () => undefined)
  expectTypeOf(bare()).toEqualTypeOf<PluginEntry>()
})

test('while every authorizePublish handler is idle a publish skips the chain; the webhooks intake gate is idle until a subscription exists', async (t) => {
  const asked: string[] = []
  // idle itself: it is asked only when another handler of the chain is not
  const watcher = definePlugin('watcher', async (ctx) => {
    ctx.hooks.authorizePublish(function noteTopic (attempt: PublishAttempt) { asked.push(attempt.topic) }, { idle: () => true })
  })
  // no validation rule and no idempotency: the webhooks intake gate is the only other handler
  const broker = await startBroker(t, { validation: { rules: [] }, idempotency: { enabled: false }, webhooks: { denyNetworks: [] }, plugins: [watcher()] })
  const publisher = await connect(t, mqttUrl(broker))
  await publisher.publishAsync('hostel/one', 'x', { qos: 1 })
  assert.deepEqual(asked, [])

  const reply = await fetch(`http://127.0.0.1:${broker.ports.http}/api/webhooks`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ service_id: 'ledger', webhook_url: 'http://127.0.0.1:9/hook', topic_filters: ['hostel/ledger/#'] })
  })
  assert.equal(reply.status, 201)
  await publisher.publishAsync('hostel/two', 'x', { qos: 1 })
  assert.deepEqual(asked, ['hostel/two'])
})

test('an idle() that throws neither ends the process nor fails the publish: reported once, its handler runs from then on', async (t) => {
  const asked: string[] = []
  let calls = 0
  const buggy = definePlugin('buggy-idle', async (ctx) => {
    ctx.hooks.authorizePublish(function noteTopic (attempt: PublishAttempt) { asked.push(attempt.topic) }, {
      idle: () => {
        calls++
        throw new Error('idle bug')
      }
    })
  })
  // no validation rule and no webhook subscription: every other handler is idle, so this idle() is asked
  const broker = await startBroker(t, { validation: { rules: [] }, idempotency: { enabled: false }, webhooks: { denyNetworks: [] }, plugins: [buggy()] })
  const publisher = await connect(t, mqttUrl(broker))
  await publisher.publishAsync('hostel/one', 'x', { qos: 1 })
  await publisher.publishAsync('hostel/two', 'x', { qos: 1 })
  assert.deepEqual(asked, ['hostel/one', 'hostel/two'])
  assert.equal(calls, 1, 'asked once: a throwing idle() is not asked again')
  const errors = (await broker.metrics.getSingleMetric('ce_broker_errors_total')?.get())?.values
  assert.equal(errors?.find((v) => v.labels.component === 'plugin')?.value, 1)
})
