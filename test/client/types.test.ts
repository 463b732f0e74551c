/**
 * The generated event map types `publish`: a missing or mistyped field of `data`, or a
 * type nobody registered, does not compile. Checked twice: by the suite's own type check
 * (the `@ts-expect-error` lines below fail it if the call compiles), and by compiling a
 * publisher's file here and reading TypeScript's diagnostics.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'
import { createPublisher, type Publisher } from '../../client/index.js'
import { dataschemas, type Events } from '../../examples/events.js'
import { connect, mqttUrl, startBroker } from '../helpers/broker.js'
import { defer } from '../helpers/cleanup.js'
import { bookingReserved } from '../helpers/events.js'

/** A valid reservation, as the bundled schema has it (test/helpers/events.ts). */
const VALID = bookingReserved().data as Events['albergue.v1.booking.reserved']

/** Never called: the suite's `tsc --noEmit` reads it. */
export function compileTimeChecks (publisher: Publisher<Events>): void {
  void publisher.publish('albergue.v1.booking.reserved', VALID)
  // @ts-expect-error: booking_id and the other required fields are missing
  void publisher.publish('albergue.v1.booking.reserved', { nights: 0 })
  // @ts-expect-error: nights is a number
  void publisher.publish('albergue.v1.booking.reserved', { ...VALID, nights: '1' })
  // @ts-expect-error: no such type in the registry
  void publisher.publish('albergue.v1.booking.reservd', VALID)
}

test('a publisher\'s file with a missing and a mistyped field does not compile, and TypeScript names the fields', () => {
  const fixture = fileURLToPath(new URL('../../examples/events.ts', import.meta.url))
  const client = fileURLToPath(new URL('../../client/index.ts', import.meta.url))
  const file = fileURLToPath(new URL('./publisher-under-test.ts', import.meta.url))
  const source = [
    `import type { Publisher } from ${JSON.stringify(client.replace(/\.ts$/, '.js'))}`,
    `import type { Events } from ${JSON.stringify(fixture.replace(/\.ts$/, '.js'))}`,
    'export async function book (publisher: Publisher<Events>): Promise<void> {',
    '  await publisher.publish(\'albergue.v1.booking.reserved\', { nights: 0 })',
    '  await publisher.publish(\'albergue.v1.payment.completed\', { payment_id: \'p-1\', booking_id: \'b-1\', amount: \'12.50\', currency: \'EUR\', provider_reference: \'x\', completed_at: \'2026-05-01T10:00:00Z\' })',
    '}'
  ].join('\n')
  const options: ts.CompilerOptions = { strict: true, noEmit: true, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, skipLibCheck: true, types: ['node'] }
  const host = ts.createCompilerHost(options)
  const read = host.readFile.bind(host)
  host.readFile = (name) => name === file ? source : read(name)
  const exists = host.fileExists.bind(host)
  host.fileExists = (name) => name === file || exists(name)
  const program = ts.createProgram([file], options, host)
  // each diagnostic with the code it points at
  const found = ts.getPreEmitDiagnostics(program).filter((d) => d.file?.fileName === file).map((d) => ({
    at: source.slice(d.start ?? 0, (d.start ?? 0) + (d.length ?? 0)),
    message: ts.flattenDiagnosticMessageText(d.messageText, '\n')
  }))
  assert.equal(found.length, 2, found.map((f) => f.message).join('\n---\n'))
  assert.equal(found[0]?.at, '{ nights: 0 }')
  assert.match(found[0]?.message ?? '', /missing the following properties[^]*booking_id/)
  assert.equal(found[1]?.at, 'amount')
  assert.match(found[1]?.message ?? '', /'string' is not assignable to type 'number'/)
})

test('a typed publisher names each type\'s version by the generated dataschemas, and the broker checks it against that version', async (t) => {
  const broker = await startBroker(t)
  const publisher = await createPublisher<Events>({ url: mqttUrl(broker), clientId: 'typed', source: '/albergue/booking-service', dataschemas })
  defer(t, () => publisher.close())
  const subscriber = await connect(t, mqttUrl(broker))
  await subscriber.subscribeAsync('albergue/#', { qos: 1 })
  const arriving = new Promise<Record<string, unknown>>((resolve) => { subscriber.once('message', (_topic, payload) => { resolve(JSON.parse(String(payload)) as Record<string, unknown>) }) })
  assert.equal((await publisher.publish('albergue.v1.booking.reserved', VALID)).duplicate, false)
  assert.equal((await arriving).dataschema, 'https://albergue.example/schemas/v1/albergue.v1.booking.reserved.json')
})
