/**
 * A throw-away redis-server for scenarios with `redis: true`: `run.js` starts one,
 * empty and without persistence (`--save '' --appendonly no`), on 127.0.0.1 and a
 * free port, for each ce-broker run, and stops it after. A fresh one per run keeps
 * rounds alike: no idempotency keys or audit stream left over from the last one,
 * and its memory bounded by one run's records.
 *
 * It is spoken to with single inline commands on short-lived connections (PING until
 * it serves, `INFO cpu` to sample its CPU time), not through a client library, so no
 * reconnect or retry logic sits between the benchmark and what it asks.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { connect, createServer } from 'node:net'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'

const COMMAND = 'redis-server'
/** Longest redis-server may take to answer PING after it is spawned, in ms. */
const START_TIMEOUT_MS = 10_000
/** Longest redis-server may take to exit after SIGTERM, in ms (it shuts down on its 10 Hz timer). */
const STOP_TIMEOUT_MS = 10_000
/** Longest one command may take, connection included, in ms. */
const COMMAND_TIMEOUT_MS = 5_000
const START_POLL_MS = 25
/** redis-server's own output kept to explain a failure: the last this many characters. */
const OUTPUT_KEPT_CHARS = 4_000

/** True when `redis-server` can be run: on the PATH, executable, answering `--version`. */
export function redisServerAvailable (): boolean {
  const probe = spawnSync(COMMAND, ['--version'], { stdio: 'ignore', timeout: COMMAND_TIMEOUT_MS })
  return probe.error === undefined && probe.status === 0
}

/** One sample of redis-server's CPU time (`INFO cpu`: user + system, main thread and children). */
export interface RedisCpuSample {
  readonly cpuSeconds: number
  /** This process's `performance.now()` when the answer arrived, in ms. */
  readonly atMs: number
}

/** A running redis-server child; `stop()` or `kill()` it. */
export class RedisServer {
  /** `redis://127.0.0.1:<port>`, for `redis.url`. */
  readonly url: string
  readonly #port: number
  readonly #process: ChildProcess
  readonly #exited: Promise<void>
  #exitedAs: string | undefined
  /** redis-server's stdout and stderr, last OUTPUT_KEPT_CHARS characters: shown only when something fails. */
  #output = ''

  private constructor (port: number) {
    this.#port = port
    this.url = `redis://127.0.0.1:${port}`
    this.#process = spawn(COMMAND, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] })
    const server = this
    const keep = (chunk: Buffer): void => { server.#output = (server.#output + chunk.toString('utf8')).slice(-OUTPUT_KEPT_CHARS) }
    this.#process.stdout?.on('data', keep)
    this.#process.stderr?.on('data', keep)
    this.#exited = new Promise<void>((resolve) => {
      // 'close', not 'exit': its output is all read by then, for the error message
      server.#process.once('close', function onClose (code: number | null, signal: NodeJS.Signals | null) {
        server.#exitedAs = signal === null ? `code ${String(code)}` : `signal ${signal}`
        resolve()
      })
      // a failed spawn emits 'error' and then 'close'
      server.#process.once('error', function onError (err: Error) { server.#output += `\n${err.message}` })
    })
  }

  /** Spawn redis-server on a free port and wait until it answers PING. */
  static async start (): Promise<RedisServer> {
    const server = new RedisServer(await freePort())
    try {
      await server.#waitReady()
    } catch (err: unknown) {
      server.kill()
      throw err
    }
    return server
  }

  /** Its CPU time so far (`INFO cpu`). */
  async cpu (): Promise<RedisCpuSample> {
    const info = await command(this.#port, 'INFO cpu')
    const field = (name: string): number => {
      const value = Number(new RegExp(`^${name}:([0-9.]+)`, 'm').exec(info)?.[1])
      if (!Number.isFinite(value)) throw new Error(`redis-server: no ${name} in INFO cpu`)
      return value
    }
    return {
      cpuSeconds: field('used_cpu_user') + field('used_cpu_sys') + field('used_cpu_user_children') + field('used_cpu_sys_children'),
      atMs: performance.now()
    }
  }

  /** SIGTERM and wait for its exit; SIGKILL and reject after STOP_TIMEOUT_MS or if it had died already. */
  async stop (): Promise<void> {
    if (this.#exitedAs !== undefined) throw this.#failure(`exited (${this.#exitedAs}) before it was stopped`)
    this.#process.kill('SIGTERM')
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<'timeout'>((resolve) => { timer = setTimeout(resolve, STOP_TIMEOUT_MS, 'timeout') })
    try {
      if (await Promise.race([this.#exited, timeout]) === 'timeout') throw this.#failure(`did not exit within ${STOP_TIMEOUT_MS} ms of SIGTERM`)
    } finally {
      clearTimeout(timer)
      this.kill()
    }
  }

  /** SIGKILL if it is still running; for cleanup after a failure. */
  kill (): void {
    if (this.#exitedAs === undefined && this.#process.exitCode === null && this.#process.signalCode === null) this.#process.kill('SIGKILL')
  }

  async #waitReady (): Promise<void> {
    const deadline = performance.now() + START_TIMEOUT_MS
    for (;;) {
      if (this.#exitedAs !== undefined) throw this.#failure(`exited (${this.#exitedAs}) while starting`)
      try {
        const reply = await command(this.#port, 'PING')
        if (reply === 'PONG') return
        throw this.#failure(`answered PING with ${JSON.stringify(reply)}`)
      } catch (err: unknown) {
        // refused: not listening yet; anything else is final
        if (!isRefused(err)) throw err
      }
      if (performance.now() > deadline) throw this.#failure(`not answering PING within ${START_TIMEOUT_MS} ms`)
      await sleep(START_POLL_MS)
    }
  }

  #failure (what: string): Error {
    const output = this.#output.trim()
    return new Error(`redis-server on port ${this.#port} ${what}${output === '' ? '' : `; its output:\n${output}`}`)
  }
}

function isRefused (err: unknown): boolean {
  return err instanceof Error && 'code' in err && err.code === 'ECONNREFUSED'
}

/** A port nobody listens on right now: bound on 127.0.0.1 by the OS, then released for redis-server. */
async function freePort (): Promise<number> {
  const probe = createServer()
  await new Promise<void>((resolve, reject) => {
    probe.once('error', reject)
    probe.listen(0, '127.0.0.1', resolve)
  })
  const address = probe.address()
  await new Promise<void>((resolve) => { probe.close(() => { resolve() }) })
  if (address === null || typeof address === 'string') throw new Error(`unexpected probe address ${JSON.stringify(address)}`)
  return address.port
}

/**
 * Send one inline command on a new connection and return its reply: a simple string
 * (`+PONG`) or a bulk string (`$<n>`, INFO's answer); an error reply (`-ERR ...`)
 * rejects. Enough RESP for PING and INFO, nothing more.
 */
async function command (port: number, line: string): Promise<string> {
  return await new Promise<string>((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port })
    let received = Buffer.alloc(0)
    let settled = false
    const timer = setTimeout(function commandTimedOut () { finish(new Error(`redis-server: no reply to ${line} within ${COMMAND_TIMEOUT_MS} ms`)) }, COMMAND_TIMEOUT_MS)
    // the first outcome counts: destroying the socket below closes it, which calls this again
    function finish (outcome: Error | string): void {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.destroy()
      if (outcome instanceof Error) reject(outcome)
      else resolve(outcome)
    }
    socket.on('connect', function connected () { socket.write(`${line}\r\n`) })
    socket.on('error', finish)
    socket.on('close', function closed () { finish(new Error(`redis-server closed the connection before replying to ${line}`)) })
    socket.on('data', function onData (chunk: Buffer) {
      received = Buffer.concat([received, chunk])
      const headerEnd = received.indexOf('\r\n')
      if (headerEnd < 0) return
      const header = received.toString('utf8', 1, headerEnd)
      switch (received[0]) {
        case 0x2b: finish(header); return // '+': simple string
        case 0x2d: finish(new Error(`redis-server: ${line}: ${header}`)); return // '-': error
        case 0x24: { // '$': bulk string of `header` bytes, then CRLF
          const length = Number(header)
          const bodyStart = headerEnd + 2
          if (received.length >= bodyStart + length + 2) finish(received.toString('utf8', bodyStart, bodyStart + length))
          return
        }
        default: finish(new Error(`redis-server: unexpected reply to ${line}: ${JSON.stringify(received.toString('utf8', 0, 40))}`))
      }
    })
  })
}
