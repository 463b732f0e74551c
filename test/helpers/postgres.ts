import { defer } from './cleanup.js'
import { commandUnavailable } from './commands.js'
import { freePort } from './net.js'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { chown, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, type TestContext } from 'node:test'
import pg from 'pg'

/** A PostgreSQL server spawned for a test in a temporary folder, on a free port. */
export interface TestPostgres {
  /** `postgres://postgres@127.0.0.1:<port>/postgres`: trust authentication, no password. */
  readonly url: string
  readonly port: number
  /** A pool on `url`, ended after the test. */
  readonly pool: pg.Pool
}

/**
 * Where the PostgreSQL server binaries are: on the PATH, or in Debian's
 * `/usr/lib/postgresql/<version>/bin` (the `postgresql` package puts them there,
 * not on the PATH), the newest version first. `undefined` when neither has them.
 */
function binFolder (): string | undefined {
  const probe = spawnSync('initdb', ['--version'], { stdio: 'ignore' })
  if (probe.error === undefined && probe.status === 0) return ''
  const root = '/usr/lib/postgresql'
  if (!existsSync(root)) return undefined
  const versions = readdirSync(root).filter((name) => /^\d+$/.test(name)).sort((a, b) => Number(b) - Number(a))
  const found = versions.map((version) => join(root, version, 'bin')).find((bin) => existsSync(join(bin, 'initdb')) && existsSync(join(bin, 'postgres')))
  return found
}

/**
 * Why PostgreSQL tests cannot run here, or `undefined` when they can. Without the
 * server binaries they are skipped with this reason, except under CI, where their
 * absence is a failure (CI installs the `postgresql` package).
 */
export function postgresUnavailable (): string | undefined {
  const bin = binFolder()
  const initdb = bin === undefined || bin === '' ? 'initdb' : join(bin, 'initdb')
  return commandUnavailable({ command: initdb, versionArgs: ['--version'], aptPackage: 'postgresql', tests: 'PostgreSQL tests' })
}

/** The uid and gid of the `postgres` user the Debian package creates: `initdb` refuses to run as root. */
function postgresUser (): { uid: number, gid: number } {
  const id = (flag: string): number => {
    const out = spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' })
    const value = Number(out.stdout.trim())
    if (out.status !== 0 || !Number.isInteger(value)) throw new Error(`running as root, and there is no postgres user to run PostgreSQL as: ${out.stderr.trim()}`)
    return value
  }
  return { uid: id('-u'), gid: id('-g') }
}

/**
 * Start a PostgreSQL server of its own for the test: `initdb` into a temporary
 * folder (trust authentication, superuser `postgres`), then `postgres` on a free
 * port on 127.0.0.1 with its socket in that folder and durability off (the data is
 * thrown away). As root, both run as the `postgres` user. Stopped (fast shutdown)
 * and the folder removed after the test.
 */
export async function startPostgres (t: TestContext): Promise<TestPostgres> {
  return await launch((fn) => { defer(t, fn) })
}

/**
 * One server for all the tests of a file (each uses tables of its own): started by the
 * first test that calls the returned function, stopped after the file's last test.
 * Call it at the top of the file.
 */
export function postgresForFile (): () => Promise<TestPostgres> {
  const cleanups: Array<() => unknown> = []
  let server: Promise<TestPostgres> | undefined
  after(async () => {
    for (let next = cleanups.pop(); next !== undefined; next = cleanups.pop()) await next()
  })
  return async () => {
    server ??= launch((fn) => { cleanups.push(fn) })
    return await server
  }
}

async function launch (cleanup: (fn: () => unknown) => void): Promise<TestPostgres> {
  const bin = binFolder() ?? ''
  const command = (name: string): string => bin === '' ? name : join(bin, name)
  const dir = await mkdtemp(join(tmpdir(), 'ce-broker-pg-'))
  cleanup(async () => { await rm(dir, { recursive: true, force: true }) })
  const user = process.getuid?.() === 0 ? postgresUser() : undefined
  if (user !== undefined) await chown(dir, user.uid, user.gid)
  const data = join(dir, 'data')

  const initdb = spawnSync(command('initdb'), ['-D', data, '--auth=trust', '-U', 'postgres', '-E', 'UTF8', '--no-locale', '--no-sync'], {
    encoding: 'utf8',
    // a folder the postgres user can enter: the test's own may be in root's home
    cwd: dir,
    ...(user === undefined ? {} : { uid: user.uid, gid: user.gid })
  })
  if (initdb.status !== 0) throw new Error(`initdb failed (${String(initdb.status ?? initdb.error)}): ${initdb.stderr}`)

  const port = await freePort()
  const child = spawn(command('postgres'), [
    '-D', data, '-p', String(port), '-k', dir,
    '-c', 'listen_addresses=127.0.0.1',
    '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off',
    '-c', 'max_connections=40', '-c', 'shared_buffers=16MB'
  ], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], ...(user === undefined ? {} : { uid: user.uid, gid: user.gid }) })
  let stderr = ''
  child.stderr?.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  cleanup(async () => { await stopServer(child) })

  const url = `postgres://postgres@127.0.0.1:${port}/postgres`
  await waitUntilAccepting(url, child, () => stderr)
  const pool = new pg.Pool({ connectionString: url, max: 8 })
  // an idle pooled connection the server closes (its shutdown) is reported here, not thrown
  pool.on('error', () => {})
  cleanup(async () => { await pool.end() })
  return { url, port, pool }
}

/** Connect until the server answers (within 20 s), failing at once if it exits. */
async function waitUntilAccepting (url: string, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + 20_000
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`postgres exited (${String(child.exitCode ?? child.signalCode)}): ${output()}`)
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 })
    try {
      await client.connect()
      await client.query('SELECT 1')
      return
    } catch (err: unknown) {
      if (Date.now() > deadline) throw new Error(`postgres did not accept connections within 20 s: ${output()}`, { cause: err })
    } finally {
      await client.end().catch(() => { /* it never connected: nothing to end */ })
    }
    await new Promise((resolve) => { setTimeout(resolve, 100) })
  }
}

/** SIGINT is PostgreSQL's fast shutdown (sessions ended, no wait for clients); SIGKILL if it still runs after 10 s. */
async function stopServer (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((resolve) => { child.once('exit', resolve) })
  child.kill('SIGINT')
  const timer = setTimeout(() => { child.kill('SIGKILL') }, 10_000)
  await exited
  clearTimeout(timer)
}
