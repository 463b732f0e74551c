/**
 * The examples in examples/ run as users run them (`node --import tsx examples/…`),
 * against a real broker: what they print is what happened.
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { test, type TestContext } from 'node:test'
import { fileURLToPath } from 'node:url'
import { connect, httpUrl, mqttUrl, startBroker } from '../helpers/broker.js'
import { defer } from '../helpers/cleanup.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved } from '../helpers/events.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))

/** Run an example; its stdout lines as they come, and a way to wait for one. */
function run (t: TestContext, example: string, env: Readonly<Record<string, string>>): { child: ChildProcess, lines: string[], line: (pattern: RegExp) => Promise<string>, exited: Promise<number | null> } {
  const child = spawn(process.execPath, ['--import', 'tsx', example], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] })
  defer(t, () => { child.kill('SIGKILL') })
  const lines: string[] = []
  const waiting: Array<{ pattern: RegExp, resolve: (line: string) => void }> = []
  createInterface({ input: child.stdout ?? process.stdin }).on('line', (line) => {
    lines.push(line)
    for (const w of waiting.filter((w) => w.pattern.test(line))) {
      waiting.splice(waiting.indexOf(w), 1)
      w.resolve(line)
    }
  })
  const exited = new Promise<number | null>((resolve) => { child.on('exit', (code) => { resolve(code) }) })
  const line = async (pattern: RegExp): Promise<string> => {
    const seen = lines.find((l) => pattern.test(l))
    if (seen !== undefined) return seen
    return await Promise.race([
      new Promise<string>((resolve) => { waiting.push({ pattern, resolve }) }),
      exited.then((code) => { throw new Error(`${example} exited (${String(code)}) before printing ${String(pattern)}; it printed: ${lines.join(' | ')}`) })
    ])
  }
  return { child, lines, line, exited }
}

test('examples/publisher.ts: accepted, a duplicate, and a rejection with the broker\'s reason', async (t) => {
  const broker = await startBroker(t)
  const example = run(t, 'examples/publisher.ts', { BROKER_URL: mqttUrl(broker) })
  assert.equal(await example.exited, 0)
  assert.equal(example.lines.length, 3, example.lines.join('\n'))
  assert.match(example.lines[0] ?? '', /^accepted [0-9a-f-]{36}$/)
  assert.equal(example.lines[1], 'published again: duplicate=true')
  assert.equal(example.lines[2], 'rejected: schema_validation_failed /data/nights must be >= 1')
})

test('examples/webhook-receiver.ts subscribes itself and handles the booking events it is sent', async (t) => {
  const broker = await startBroker(t, { webhooks: { denyNetworks: [] } })
  const example = run(t, 'examples/webhook-receiver.ts', { PORT: '0', BROKER_HTTP_URL: httpUrl(broker), WEBHOOK_SECRET: 'an-example-secret-of-some-length' })
  assert.equal(await example.line(/^subscribed: /), 'subscribed: 201')
  const publisher = await connect(t, mqttUrl(broker))
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved({ booking_id: 'b-7', nights: 3 })), { qos: 1 })
  assert.equal(await example.line(/^booking b-7/), 'booking b-7 reserved for 3 night(s)')
})
