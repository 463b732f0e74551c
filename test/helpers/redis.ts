import { defer } from './cleanup.js'
import { freePort } from './net.js'
import { spawn, spawnSync } from 'node:child_process'
import type { TestContext } from 'node:test'

/** A redis-server spawned for a test on a free port, without persistence. */
export interface TestRedis {
  readonly url: string
  readonly port: number
  /** Kill the server now (SIGKILL), as a crash would. */
  readonly kill: () => Promise<void>
}

/**
 * Why Redis tests cannot run here, or `undefined` when they can. Without
 * `redis-server` on the PATH they are skipped with this reason, except under CI,
 * where a missing server is a failure (CI installs it).
 */
export function redisUnavailable (): string | undefined {
  if (process.env.REDIS_URL !== undefined) return undefined
  const probe = spawnSync('redis-server', ['--version'], { stdio: 'ignore' })
  if (probe.error === undefined && probe.status === 0) return undefined
  if (process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false') {
    throw new Error('CI is set but redis-server is not on the PATH: .ci/run must install it')
  }
  return 'redis-server is not installed (apt-get install redis-server); Redis tests skipped'
}

/** Spawn `redis-server --port <free> --save '' --appendonly no` on 127.0.0.1, stopped after the test. */
export async function startRedis (t: TestContext): Promise<TestRedis> {
  const given = process.env.REDIS_URL
  if (given !== undefined) {
    return { url: given, port: Number(new URL(given).port || 6379), kill: async () => { throw new Error('cannot kill an external REDIS_URL server') } }
  }
  const port = await freePort()
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] })
  defer(t, async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((resolve) => { child.once('exit', resolve) })
    child.kill('SIGTERM')
    await exited
  })
  await new Promise<void>((resolve, reject) => {
    let output = ''
    const timer = setTimeout(() => { reject(new Error(`redis-server did not start within 10 s: ${output}`)) }, 10_000)
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString()
      if (output.includes('Ready to accept connections')) {
        clearTimeout(timer)
        resolve()
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`redis-server exited with ${code}: ${output}`))
    })
  })
  const kill = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((resolve) => { child.once('exit', resolve) })
    child.kill('SIGKILL')
    await exited
  }
  return { url: `redis://127.0.0.1:${port}`, port, kill }
}
