#!/usr/bin/env node
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { BrokerError, OPTIONS, createBroker, loadConfig, newApiKey, readConfigFile, type Broker } from './index.js'
import { packageVersion } from './core/version.js'
import { hashPassword } from '../plugins/auth/passwords.js'
import { runSchemasCheck } from './schemas-check.js'
import { runTypes } from './types-command.js'

/** Longest a SIGINT/SIGTERM shutdown may take before the process gives up and exits 1. */
const SHUTDOWN_TIMEOUT_MS = 15_000

const flagOptions: NonNullable<ParseArgsConfig['options']> = {
  config: { type: 'string', short: 'c' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' }
}
for (const spec of OPTIONS) {
  if (spec.flag !== undefined) flagOptions[spec.flag.slice(2)] = { type: 'string' }
}

function usage (): string {
  const rows: Array<[label: string, text: string]> = [
    ['--config, -c FILE', 'YAML or JSON config file'],
    ...OPTIONS.filter((spec) => spec.flag !== undefined).map((spec): [string, string] =>
      [`${spec.flag ?? ''} ${spec.flag === '--host' ? 'ADDR' : 'VALUE'}`, `${spec.doc} (default ${spec.default}; env ${spec.env})`]),
    ['--help, -h', 'this text'],
    ['--version, -v', 'print the version']
  ]
  const width = Math.max(...rows.map(([label]) => label.length)) + 2
  return [
    'Usage: ce-broker [--config FILE] [flags]',
    '       ce-broker hash-password < secret   print the hash of a password read on stdin, for auth.users',
    '       ce-broker new-api-key              print a new HTTP API key and its hash, for auth.apiKeys',
    '       ce-broker schemas check --against <dir | broker URL> <dir>',
    '                                          check a folder of schemas against the registered ones (--help for more)',
    '       ce-broker types --out events.ts [--from <dir | broker URL>]',
    '                                          write each event type\'s data type for ce-broker/client (--help for more)',
    '',
    'An MQTT broker for CloudEvents. Settings: defaults < config file < flags < CE_BROKER_* environment.',
    '',
    ...rows.map(([label, text]) => `  ${label.padEnd(width)}${text}`),
    '',
    'Logs are JSON lines on stdout; pipe them through `npx pino-pretty` to read them.'
  ].join('\n')
}

function fail (message: string): never {
  process.stderr.write(`ce-broker: ${message}\n`)
  process.exit(1)
}

/** `ce-broker hash-password`: the first line of stdin, hashed for `auth.users[].password`. */
async function printPasswordHash (): Promise<void> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)))
  const password = Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? ''
  if (password === '') fail('hash-password: no password on stdin (echo -n "secret" | ce-broker hash-password)')
  process.stdout.write(`${await hashPassword(password)}\n`)
}

async function main (): Promise<void> {
  if (process.argv[2] === 'hash-password') {
    await printPasswordHash()
    return
  }
  if (process.argv[2] === 'schemas' && process.argv[3] === 'check') {
    const write = (stream: NodeJS.WriteStream) => (line: string): void => { stream.write(`${line}\n`) }
    process.exitCode = await runSchemasCheck(process.argv.slice(4), write(process.stdout), write(process.stderr))
    return
  }
  if (process.argv[2] === 'types') {
    const write = (stream: NodeJS.WriteStream) => (line: string): void => { stream.write(`${line}\n`) }
    process.exitCode = await runTypes(process.argv.slice(3), write(process.stdout), write(process.stderr))
    return
  }
  if (process.argv[2] === 'new-api-key') {
    // the key goes to whoever calls the API; only the hash goes in the config
    process.stdout.write(`${JSON.stringify(newApiKey())}\n`)
    return
  }
  let parsed: ReturnType<typeof parseArgs>
  try {
    parsed = parseArgs({ options: flagOptions, allowPositionals: false, strict: true })
  } catch (err: unknown) {
    fail(`${err instanceof Error ? err.message : String(err)}\n\n${usage()}`)
  }
  const { values } = parsed
  if (values.help === true) {
    process.stdout.write(`${usage()}\n`)
    return
  }
  if (values.version === true) {
    process.stdout.write(`${packageVersion()}\n`)
    return
  }

  let starting: Promise<Broker>
  try {
    const file = typeof values.config === 'string' ? readConfigFile(values.config) : undefined
    const config = loadConfig({}, { ...(file === undefined ? {} : { file }), flags: values, env: process.env })
    starting = createBroker(config)
  } catch (err: unknown) {
    if (err instanceof BrokerError) fail(err.message)
    throw err
  }

  // Installed before the broker is up: the "ready" line is logged inside createBroker,
  // and a signal sent right after it must find a handler, not node's default (death by signal).
  let stopping = false
  const shutdown = (signal: NodeJS.Signals): void => {
    if (stopping) return
    stopping = true
    const timer = setTimeout(() => {
      process.stderr.write(`ce-broker: shutdown did not finish within ${SHUTDOWN_TIMEOUT_MS} ms\n`)
      process.exit(1)
    }, SHUTDOWN_TIMEOUT_MS)
    timer.unref()
    starting.then(async (broker) => {
      broker.log.info({ signal }, 'shutting down')
      await broker.close()
      process.exit(0)
    }).catch((err: unknown) => {
      process.stderr.write(`ce-broker: shutdown failed: ${err instanceof Error ? err.message : String(err)}\n`)
      process.exit(1)
    })
  }
  process.on('SIGINT', shutdown)
  process.on('SIGTERM', shutdown)

  try {
    await starting
  } catch (err: unknown) {
    if (err instanceof BrokerError) fail(err.message)
    throw err
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`ce-broker: unexpected failure: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
  process.exit(1)
})
