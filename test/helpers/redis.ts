import { defer } from './cleanup.js'
import { commandUnavailable } from './commands.js'
import { freePort } from './net.js'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestContext } from 'node:test'

/** A redis-server spawned for a test on a free port. */
export interface TestRedis {
  readonly url: string
  readonly port: number
  /** Kill the server now (SIGKILL), as a crash would. */
  readonly kill: () => Promise<void>
  /** Kill it if it runs, then start it again on the same port (with its data when `persistent`). */
  readonly restart: () => Promise<void>
}

/**
 * Why Redis tests cannot run here, or `undefined` when they can. Without
 * `redis-server` on the PATH they are skipped with this reason, except under CI,
 * where a missing server is a failure (CI installs it).
 */
export function redisUnavailable (): string | undefined {
  if (process.env.REDIS_URL !== undefined) return undefined
  return commandUnavailable({ command: 'redis-server', versionArgs: ['--version'], aptPackage: 'redis-server', tests: 'Redis tests' })
}

export interface RedisOptions {
  /** Keep data across `restart()`: an append-only file, fsynced on every write, in a temporary folder. */
  readonly persistent?: boolean
  /** Clients must send this password (`requirepass`); the URL carries it. */
  readonly password?: string
  /** Serve TLS only, with these PEM files; the URL is `rediss://localhost:<port>`. */
  readonly tls?: { readonly certFile: string, readonly keyFile: string }
}

/**
 * Spawn `redis-server --port <free> --save '' --appendonly no` on 127.0.0.1 (with
 * `persistent`, an fsynced append-only file instead), stopped after the test.
 */
export async function startRedis (t: TestContext, options: RedisOptions = {}): Promise<TestRedis> {
  const given = process.env.REDIS_URL
  if (given !== undefined) {
    const refuse = async (): Promise<void> => { throw new Error('cannot kill or restart an external REDIS_URL server') }
    return { url: given, port: Number(new URL(given).port || 6379), kill: refuse, restart: refuse }
  }
  const port = await freePort()
  const args = options.tls === undefined
    ? ['--port', String(port)]
    : ['--port', '0', '--tls-port', String(port), '--tls-cert-file', options.tls.certFile, '--tls-key-file', options.tls.keyFile, '--tls-auth-clients', 'no']
  // its own folder: a redis-server loads the dump.rdb of the folder it starts in
  const dir = await mkdtemp(join(tmpdir(), 'ce-broker-redis-'))
  defer(t, async () => { await rm(dir, { recursive: true, force: true }) })
  args.push('--bind', '127.0.0.1', '--save', '', '--dir', dir)
  if (options.password !== undefined) args.push('--requirepass', options.password)
  if (options.persistent === true) {
    args.push('--appendonly', 'yes', '--appendfsync', 'always')
  } else {
    args.push('--appendonly', 'no')
  }
  let child = await spawnRedis(args)
  defer(t, async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((resolve) => { child.once('exit', resolve) })
    child.kill('SIGTERM')
    await exited
  })
  const kill = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((resolve) => { child.once('exit', resolve) })
    child.kill('SIGKILL')
    await exited
  }
  const restart = async (): Promise<void> => {
    await kill()
    child = await spawnRedis(args)
  }
  const auth = options.password === undefined ? '' : `:${encodeURIComponent(options.password)}@`
  const url = options.tls === undefined ? `redis://${auth}127.0.0.1:${port}` : `rediss://${auth}localhost:${port}`
  return { url, port, kill, restart }
}

async function spawnRedis (args: readonly string[]): Promise<ChildProcess> {
  return await spawnUntil('redis-server', args, 'Ready to accept connections')
}

/** Spawn `command` and resolve once its standard output has said `ready` (within 10 s). */
export async function spawnUntil (command: string, args: readonly string[], ready: string): Promise<ChildProcess> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  await new Promise<void>((resolve, reject) => {
    let output = ''
    const timer = setTimeout(() => { reject(new Error(`${command} did not start within 10 s: ${output}`)) }, 10_000)
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString()
      if (output.includes(ready)) {
        clearTimeout(timer)
        resolve()
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`${command} exited with ${code}: ${output}`))
    })
  })
  return child
}
