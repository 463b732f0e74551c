/**
 * The outbox relay's promise, end to end: 1,000 rows, two relays in processes of their
 * own, one killed (SIGKILL) in the middle of a batch and started again. The broker
 * accepts each row's event once, answers the rows published again as duplicates, and
 * subscribers get every event exactly once, each aggregate's in order.
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { test, type TestContext } from 'node:test'
import { fileURLToPath } from 'node:url'
import type { AuditRecord } from '../../plugins/audit/index.js'
import type { OutboxRelayStats } from '../../client/index.js'
import { collectMessages, connect, mqttUrl, sample, startBroker } from '../helpers/broker.js'
import { defer } from '../helpers/cleanup.js'
import { bookingEvents, fillOutbox, outboxRows, type NewRow } from '../helpers/outbox.js'
import { postgresUnavailable, startPostgres } from '../helpers/postgres.js'

const skip = postgresUnavailable() ?? false
const ROOT = fileURLToPath(new URL('../../', import.meta.url))

/** A relay process (test/fixtures/outbox-relay.ts) and what it printed. */
interface RelayProcess {
  readonly child: ChildProcess
  /** The ids of each batch it claimed, in order. */
  readonly batches: string[][]
  /** Resolves with its stats once it stopped on SIGTERM (undefined when killed). */
  readonly exited: Promise<OutboxRelayStats | undefined>
  /** Resolves once it is connected and waits for `go()`. */
  readonly ready: Promise<void>
  /** Resolves once it has claimed its first batch. */
  readonly claimed: Promise<void>
  readonly go: () => void
}

function startRelay (t: TestContext, env: Readonly<Record<string, string>>): RelayProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/outbox-relay.ts'], {
    cwd: ROOT, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe']
  })
  defer(t, () => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  const batches: string[][] = []
  let stats: OutboxRelayStats | undefined
  let stderr = ''
  let markReady = (): void => {}
  const ready = new Promise<void>((resolve) => { markReady = resolve })
  let markClaimed = (): void => {}
  const claimed = new Promise<void>((resolve) => { markClaimed = resolve })
  createInterface({ input: child.stdout }).on('line', (line) => {
    const message = JSON.parse(line) as { ready?: true, claimed?: string[], stats?: OutboxRelayStats }
    if (message.ready === true) markReady()
    if (message.claimed !== undefined) {
      batches.push(message.claimed)
      markClaimed()
    }
    if (message.stats !== undefined) stats = message.stats
  })
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  const exited = new Promise<OutboxRelayStats | undefined>((resolve, reject) => {
    child.once('close', (code, signal) => {
      if (code === 0 || signal === 'SIGKILL') resolve(stats)
      else reject(new Error(`relay ${env.RELAY_CLIENT_ID} exited with ${String(code ?? signal)}: ${stderr}`))
    })
  })
  return { child, batches, exited, ready, claimed, go: () => { child.stdin.write('go\n') } }
}

/** 100 bookings of 10 events each, their rows interleaved by tens of bookings: rows 1–100 are bookings 0–9 side by side, and so on. */
function bookingRows (): NewRow[] {
  const rows: NewRow[] = []
  for (let group = 0; group < 10; group++) {
    const bookings = Array.from({ length: 10 }, (_, i) => bookingEvents(`b-${group * 10 + i}`, 10))
    for (let n = 0; n < 10; n++) for (const events of bookings) rows.push(events[n] ?? events[0] as NewRow)
  }
  return rows
}

test('1,000 rows, a relay killed mid-batch and started again, another beside it: each event accepted once, duplicates answered as such, subscribers get each once and in order', { skip }, async (t) => {
  const auditDir = await mkdtemp(join(tmpdir(), 'ce-broker-outbox-audit-'))
  defer(t, () => rm(auditDir, { recursive: true, force: true }))
  const auditFile = join(auditDir, 'audit.jsonl')
  // the subscriber shares this process with the broker: on a loaded machine it may read late, and with the default
  // bound of its queue (1,000 messages, a clean session) it would be disconnected and miss the rest
  const [db, broker] = await Promise.all([startPostgres(t), startBroker(t, { audit: { file: auditFile }, limits: { maxQueuedMessages: 10_000 } })])
  const ids = await fillOutbox(db.pool, 'outbox', bookingRows())
  assert.equal(new Set(ids).size, 1_000)

  const subscriber = await connect(t, mqttUrl(broker))
  await subscriber.subscribeAsync('albergue/#', { qos: 1 })
  const received: Array<{ id: string, subject: string }> = []
  const arrivals = new Set<() => void>()
  subscriber.on('message', (topic, payload) => {
    if (!topic.startsWith('albergue/')) return
    const event = JSON.parse(payload.toString()) as { id: string, subject: string }
    received.push({ id: event.id, subject: event.subject })
    for (const check of arrivals) check()
  })
  /** Resolves once `condition` holds on what the subscriber received (checked at each arrival), rejects after 30 s. */
  const arrived = async (what: string, condition: () => boolean): Promise<void> => {
    if (condition()) return
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        arrivals.delete(check)
        reject(new Error(`${what}: not within 30 s (${received.length} events received; subscriber ${subscriber.connected ? 'connected' : 'disconnected'})`))
      }, 30_000)
      function check (): void {
        if (!condition()) return
        clearTimeout(timer)
        arrivals.delete(check)
        resolve()
      }
      arrivals.add(check)
    })
  }

  const env = { BROKER_URL: mqttUrl(broker), DATABASE_URL: db.url, OUTBOX_TABLE: 'outbox', RELAY_BATCH_SIZE: '200' }
  const a = startRelay(t, { ...env, RELAY_CLIENT_ID: 'relay-a' })
  const b = startRelay(t, { ...env, RELAY_CLIENT_ID: 'relay-b' })
  // A's second life: a process of its own, connected beforehand so that it starts relaying as soon as A is dead
  const again = startRelay(t, { ...env, RELAY_CLIENT_ID: 'relay-a-again' })
  await Promise.all([a.ready, b.ready, again.ready])
  // B first, so that A's first batch is rows B does not hold: 200 of them, all of A's to publish
  b.go()
  await b.claimed
  a.go()

  // kill A once half of the batch it holds has reached the subscriber: the other half is
  // not published yet, so A dies between its publishes and its commit
  const seen = (batch: readonly string[]): number => received.filter((r) => batch.includes(r.id)).length
  await arrived('half of a batch of A delivered', () => {
    const batch = a.batches.at(-1)
    return batch !== undefined && batch.length >= 100 && seen(batch) >= batch.length / 2
  })
  a.child.kill('SIGKILL')
  await a.exited
  const killedBatch = a.batches.at(-1) ?? []
  again.go()

  await arrived('1,000 events delivered', () => received.length >= 1_000)
  // the last batch is marked just after its events went out
  for (let polls = 0; (await outboxRows(db.pool, 'outbox')).some((r) => !r.published); polls++) {
    assert.ok(polls < 400, 'every row marked published within 20 s of its event\'s delivery')
    await new Promise((resolve) => { setTimeout(resolve, 50) })
  }
  b.child.kill('SIGTERM')
  again.child.kill('SIGTERM')
  const [statsB, statsAgain] = await Promise.all([b.exited, again.exited])
  // every event the broker accepted has reached the subscriber: a marker published after them comes back after them
  await subscriber.subscribeAsync('outbox-test/marker', { qos: 1 })
  const marker = collectMessages(subscriber, 1)
  await subscriber.publishAsync('outbox-test/marker', 'done', { qos: 1 })
  await marker
  await broker.close()

  const rows = await outboxRows(db.pool, 'outbox')
  assert.ok(rows.every((r) => r.published), 'every row is marked published')
  assert.equal(received.length, 1_000, 'no event reached the subscriber twice')
  assert.deepEqual(received.map((r) => r.id).sort(), [...ids].sort(), 'each row\'s event reached it')
  for (const booking of new Set(rows.map((r) => r.aggregateId))) {
    assert.deepEqual(received.filter((r) => r.subject === booking).map((r) => r.id), rows.filter((r) => r.aggregateId === booking).map((r) => r.id), `${booking}'s events in order`)
  }

  // what the broker saw of each id: one acceptance, then any number of duplicates
  const records = (await readFile(auditFile, 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as AuditRecord)
  const accepted = new Map<string, number>()
  const duplicates = new Map<string, number>()
  for (const record of records) {
    const tally = record.outcome === 'accepted' ? accepted : record.outcome === 'duplicate' ? duplicates : undefined
    const id = record.event.id
    assert.ok(tally !== undefined && id !== undefined, `no other outcome, each with its id: ${JSON.stringify(record)}`)
    tally.set(id, (tally.get(id) ?? 0) + 1)
  }
  assert.equal(accepted.size, 1_000)
  assert.ok([...accepted.values()].every((n) => n === 1), 'each event accepted once')
  const duplicateCount = [...duplicates.values()].reduce((sum, n) => sum + n, 0)
  assert.ok(duplicateCount > 0, 'the killed relay had published rows it could not mark: they went again')
  assert.deepEqual([...duplicates.keys()].filter((id) => !killedBatch.includes(id)), [], 'only rows of the killed relay\'s batch went twice')
  assert.equal(sample(await broker.metrics.metrics(), 'ce_broker_events_total', { outcome: 'duplicate' }), duplicateCount)
  assert.equal((statsB?.duplicates ?? 0) + (statsAgain?.duplicates ?? 0), duplicateCount, 'the relays were told of each duplicate')
  assert.ok((statsB?.published ?? 0) > 0, 'the relay beside the killed one published its share')
  // A marked the batches it finished, the other two every other row, none twice
  const markedByA = a.batches.slice(0, -1).flat().length
  assert.equal(markedByA + (statsB?.published ?? 0) + (statsAgain?.published ?? 0), 1_000)
})
