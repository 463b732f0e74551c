// the CLI's refusals, in a file of their own: each test spawns the CLI several times, and one
// file holding every CLI test passed the 60 s a test file may take on a loaded machine
import { defer } from '../helpers/cleanup.js'
import assert from 'node:assert/strict'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { startCli, tempFile } from '../helpers/cli.js'

test('an invalid config file exits 1 with a message naming the key and the value', async (t) => {
  const file = await tempFile(t, 'broker.yaml', 'mqtt:\n  port: 0\n  hots: 0.0.0.0\n')
  const unknownKey = await startCli(t, ['--config', file]).exited
  assert.equal(unknownKey.code, 1)
  assert.match(unknownKey.stderr, /config file .*broker\.yaml: mqtt\.hots is not a known key/)

  const json = await tempFile(t, 'broker.json', '{ "http": { "port": "eighty" } }')
  const wrongType = await startCli(t, ['--config', json]).exited
  assert.equal(wrongType.code, 1)
  assert.match(wrongType.stderr, /http\.port must be integer, got "eighty"/)

  const badUrl = await startCli(t, ['--mqtt-port', '0', '--http-port', '0', '--redis', 'http://cache']).exited
  assert.equal(badUrl.code, 1)
  assert.match(badUrl.stderr, /flag --redis: redis\.url must be a redis:\/\/, rediss:\/\/ or redis\+sentinel:\/\/ URL, got "http:\/\/cache"/)

  const badEnv = await startCli(t, [], { CE_BROKER_HTTP_PORT: 'x' }).exited
  assert.equal(badEnv.code, 1)
  assert.match(badEnv.stderr, /env CE_BROKER_HTTP_PORT: http\.port must be integer, got "x"/)

  const missing = await startCli(t, ['--config', join(tmpdir(), 'no-such-ce-broker.yaml')]).exited
  assert.equal(missing.code, 1)
  assert.match(missing.stderr, /no-such-ce-broker\.yaml: cannot be read/)
})

test('an unknown flag exits 1 with the usage; --help and --version exit 0', async (t) => {
  const unknown = await startCli(t, ['--mqtt-prot', '1']).exited
  assert.equal(unknown.code, 1)
  assert.match(unknown.stderr, /Unknown option '--mqtt-prot'/)
  assert.match(unknown.stderr, /Usage: ce-broker/)

  const help = await startCli(t, ['--help']).exited
  assert.equal(help.code, 0)
  assert.match(help.stdout, /--mqtt-port VALUE/)
  assert.match(help.stdout, /CE_BROKER_REDIS_URL/)

  const version = await startCli(t, ['--version']).exited
  assert.equal(version.code, 0)
  assert.match(version.stdout, /^\d+\.\d+\.\d+\n$/)
})

test('a port already in use exits 1 naming the address', async (t) => {
  const { createServer } = await import('node:net')
  const blocker = createServer()
  await new Promise<void>((resolve) => { blocker.listen(0, '127.0.0.1', resolve) })
  defer(t, () => new Promise<void>((resolve) => { blocker.close(() => { resolve() }) }))
  const address = blocker.address()
  assert.ok(typeof address === 'object' && address !== null)
  const exit = await startCli(t, ['--mqtt-port', String(address.port), '--http-port', '0']).exited
  assert.equal(exit.code, 1)
  assert.match(exit.stderr, new RegExp(`^ce-broker: cannot listen for MQTT/TCP on 127\\.0\\.0\\.1:${address.port}: listen EADDRINUSE`))
})
