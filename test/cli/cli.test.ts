import assert from 'node:assert/strict'
import { test } from 'node:test'
import { connect } from '../helpers/broker.js'
import { startCli, tempFile } from '../helpers/cli.js'

test('logs one "ready" line with the bound ports, serves MQTT and HTTP, and exits 0 on SIGTERM', async (t) => {
  const cli = startCli(t, ['--mqtt-port', '0', '--http-port', '0', '--node-id', 'cli-node'])
  const ready = await cli.waitForLog((line) => line.msg === 'ready')
  assert.equal(ready.node, 'cli-node')
  assert.equal(typeof ready.mqttPort, 'number')
  assert.equal(typeof ready.httpPort, 'number')
  assert.ok(Number(ready.mqttPort) > 0 && Number(ready.httpPort) > 0)

  const health = await fetch(`http://127.0.0.1:${Number(ready.httpPort)}/healthz`)
  assert.equal(health.status, 200)
  const client = await connect(t, `mqtt://127.0.0.1:${Number(ready.mqttPort)}`)
  assert.equal(client.connected, true)

  cli.child.kill('SIGTERM')
  const exit = await cli.exited
  assert.equal(exit.code, 0, exit.stderr)
  assert.match(exit.stdout, /"msg":"shutting down"/)
  assert.match(exit.stdout, /"msg":"closed"/)
  assert.equal(exit.stdout.split('\n').filter((line) => line.includes('"msg":"ready"')).length, 1)
})

test('SIGINT closes gracefully too, with the TLS port in the ready line when TLS is configured', async (t) => {
  const { makeCert } = await import('../helpers/certs.js')
  const cert = await makeCert(t)
  const cli = startCli(t, ['--mqtt-port', '0', '--http-port', '0', '--mqtt-tls-port', '0'], {
    CE_BROKER_MQTT_TLS_KEY: cert.keyFile,
    CE_BROKER_MQTT_TLS_CERT: cert.certFile
  })
  const ready = await cli.waitForLog((line) => line.msg === 'ready')
  assert.ok(Number(ready.mqttTlsPort) > 0)
  cli.child.kill('SIGINT')
  assert.equal((await cli.exited).code, 0)
})

test('a YAML config file is read, flags override it and CE_BROKER_* variables override both', async (t) => {
  const file = await tempFile(t, 'broker.yaml', [
    'mqtt: { port: 0 }',
    'http:',
    '  port: 0',
    'nodeId: from-file',
    'logLevel: info'
  ].join('\n'))
  const cli = startCli(t, ['--config', file, '--node-id', 'from-flag'], { CE_BROKER_NODE_ID: 'from-env' })
  const ready = await cli.waitForLog((line) => line.msg === 'ready')
  assert.equal(ready.node, 'from-env')
  cli.child.kill('SIGTERM')
  assert.equal((await cli.exited).code, 0)
})
