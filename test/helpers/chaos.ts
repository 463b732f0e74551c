/**
 * Chaos, bounded: two nodes on one Redis, a QoS 1 publisher with unique event ids on the
 * ingress node, a persistent subscriber on the egress node and a webhook receiver. One
 * fault mid-run; then every event the publisher was acknowledged (it sends what was not
 * again, as MQTT clients do) must reach the subscriber, the receiver and the audit
 * stream. Duplicates are allowed (at least once) and reported; a loss fails the test.
 * Before the journal, killing the ingress node lost 16 to 135 of 3 000 acknowledged
 * events (the resent copies were dropped as duplicates of events never delivered), and
 * killing the egress node's connections 33 to 40 of 5 000.
 */
import assert from 'node:assert/strict'
import type { TestContext } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import mqtt, { type MqttClient } from 'mqtt'
import { journalKey } from '../../src/core/cluster/scripts.js'
import { arrival, auditedIds } from './arrival.js'
import { sample } from './broker.js'
import { defer } from './cleanup.js'
import { startCli, type CliProcess } from './cli.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved } from './events.js'
import { receiver } from './receiver.js'
import { redisUnavailable, startRedis, type TestRedis } from './redis.js'

/** Why these tests cannot run here (no redis-server), or false. */
export const skip = redisUnavailable() ?? false
const EVENTS = 2_000
const WINDOW = 100
const NODE_TIMEOUT_MS = '2000'

export interface Node {
  readonly id: string
  readonly port: number
  readonly http: string
  readonly cli: CliProcess
}

export interface Run {
  readonly redis: TestRedis
  readonly ingress: Node
  readonly egress: Node
}

export async function startNode (t: TestContext, redisUrl: string, id: string, env: Readonly<Record<string, string>> = {}): Promise<Node> {
  const cli = startCli(t, ['--mqtt-port', '0', '--http-port', '0', '--node-id', id, '--redis', redisUrl], {
    CE_BROKER_REDIS_NODE_TIMEOUT_MS: NODE_TIMEOUT_MS,
    // a delivery held by a killed node is taken over within about twice this
    CE_BROKER_WEBHOOKS_LOCK_MS: '1000',
    ...env
  })
  const ready = await cli.waitForLog((line) => line.msg === 'ready', 30_000)
  return { id, port: Number(ready.mqttPort), http: `http://127.0.0.1:${String(ready.httpPort)}`, cli }
}

/** An MQTT client that keeps its session and, when dropped, tries `nodes` in turn (its unacked publishes go again). */
function client (t: TestContext, clientId: string, nodes: readonly Node[]): MqttClient {
  const c = mqtt.connect({ servers: nodes.map((node) => ({ host: '127.0.0.1', port: node.port })), protocol: 'mqtt', clientId, clean: false, reconnectPeriod: 200, reconnectOnConnackError: true, connectTimeout: 2_000 })
  c.on('error', () => { /* a refused reconnect: the next server is tried */ })
  defer(t, () => c.endAsync(true))
  return c
}

async function connected (c: MqttClient): Promise<void> {
  if (c.connected) return
  await new Promise<void>((resolve) => { c.once('connect', () => { resolve() }) })
}

interface ChaosOptions {
  /** Redis keeps its data across a restart (append-only file). */
  readonly persistent?: boolean
  /**
   * Publish on a topic no validation rule checks: the events are not deduplicated, so
   * nothing is claimed or journaled, and not audited; they must still be routed before
   * their PUBACK (aedes sends a QoS 1 PUBACK before it routes).
   */
  readonly plain?: boolean
}

/** Start the run, inject `fault` once a third of the events are acked, and check what arrived. */
export async function chaos (t: TestContext, fault: (run: Run) => Promise<void>, { persistent = false, plain = false }: ChaosOptions = {}): Promise<void> {
  const topic = plain ? 'hostel/plain/booking' : BOOKING_RESERVED_TOPIC
  const filter = plain ? 'hostel/#' : 'albergue/#'
  const redis = await startRedis(t, { persistent })
  const ingress = await startNode(t, redis.url, 'node-a')
  const egress = await startNode(t, redis.url, 'node-b')
  const hook = await receiver(t)
  const res = await fetch(`${ingress.http}/api/webhooks`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ service_id: 'notification-service', webhook_url: hook.url, topic_filters: [filter] }) })
  assert.equal(res.status, 201)

  const received: string[] = []
  const subscriber = client(t, 'registration-service', [egress, ingress])
  subscriber.on('message', (_topic, payload) => { received.push(String((JSON.parse(payload.toString()) as { id: unknown }).id)) })
  await connected(subscriber)
  await subscriber.subscribeAsync(filter, { qos: 1 })
  const publisher = client(t, 'booking-service', [ingress, egress])
  await connected(publisher)

  const events = Array.from({ length: EVENTS }, () => bookingReserved())
  let faulted: Promise<void> | undefined
  for (let start = 0; start < EVENTS; start += WINDOW) {
    if (start >= EVENTS / 3) faulted ??= fault({ redis, ingress, egress })
    // resolves once acked, on whichever node the client reaches
    await Promise.all(events.slice(start, start + WINDOW).map(async (event) => await publisher.publishAsync(topic, JSON.stringify(event), { qos: 1 })))
  }
  await faulted

  const all = events.map((event) => String(event.id))
  const hookIds = (): Set<string> => new Set(hook.requests.map((r) => r.headers['ce-id'] ?? ''))
  assert.deepEqual(await arrival(hookIds, all, 60_000), [], 'every acknowledged event reached the webhook receiver')
  assert.deepEqual(await arrival(() => new Set(received), all, 30_000), [], 'every acknowledged event reached the subscriber')
  const check = new Redis(redis.url)
  defer(t, () => check.quit())
  const audited = await auditedIds(check)
  if (!plain) assert.deepEqual(all.filter((id) => !audited.has(id)), [], 'every acknowledged event has its audit entry')
  for (const node of [ingress, egress]) {
    // what a live node finished, or a dead one's reaper took over, is gone from its journal
    for (let i = 0; i < 100 && await check.xlen(journalKey(node.id)) > 0; i++) await sleep(100)
    assert.equal(await check.xlen(journalKey(node.id)), 0, `${node.id}'s journal is empty`)
  }
  const replayed: number[] = []
  for (const node of [ingress, egress]) {
    if (node.cli.child.exitCode !== null || node.cli.child.signalCode !== null) continue
    replayed.push(sample(await (await fetch(`${node.http}/metrics`)).text(), 'ce_broker_journal_replayed_total') ?? 0)
  }
  t.diagnostic(`${EVENTS} events: subscriber got ${received.length - new Set(received).size} twice, the receiver ${hook.requests.length - hookIds().size} twice; ${replayed.reduce((a, b) => a + b, 0)} finished again from a journal`)
}

/** kill -9 of a node, as a crash would end it. */
export async function kill (node: Node): Promise<void> {
  node.cli.child.kill('SIGKILL')
  await node.cli.exited
}
