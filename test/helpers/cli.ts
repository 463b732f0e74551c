import { defer } from './cleanup.js'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import type { TestContext } from 'node:test'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))

/** A `ce-broker` process started from source, as `npx ce-broker` would run it. */
export interface CliProcess {
  readonly child: ChildProcess
  /** Every JSON log line read from stdout so far. */
  readonly logs: ReadonlyArray<Record<string, unknown>>
  /** The first JSON log line from stdout for which `match` is true. */
  waitForLog: (match: (line: Record<string, unknown>) => boolean, timeoutMs?: number) => Promise<Record<string, unknown>>
  /** Resolves with exit code and everything written to stderr once the process ends. */
  readonly exited: Promise<{ code: number | null, signal: NodeJS.Signals | null, stderr: string, stdout: string }>
}

export function startCli (t: TestContext, args: string[], env: Readonly<Record<string, string>> = {}): CliProcess {
  // keep the parent's CE_BROKER_* variables out: each test says what it sets
  const base = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('CE_BROKER_')))
  // the schema registry's versions in a folder of this process's own, unless the test names one
  const dataDir = env.CE_BROKER_DATA_DIR ?? mkdtempSync(join(tmpdir(), 'ce-broker-data-'))
  if (env.CE_BROKER_DATA_DIR === undefined) defer(t, () => rm(dataDir, { recursive: true, force: true }))
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], {
    cwd: ROOT,
    env: { ...base, CE_BROKER_DATA_DIR: dataDir, ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  defer(t, () => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })

  let stdout = ''
  let stderr = ''
  const logs: Array<Record<string, unknown>> = []
  const waiters = new Set<() => void>()
  createInterface({ input: child.stdout }).on('line', (line) => {
    stdout += `${line}\n`
    try {
      const parsed: unknown = JSON.parse(line)
      if (typeof parsed === 'object' && parsed !== null) logs.push(Object.fromEntries(Object.entries(parsed)))
    } catch {
      // a line that is not JSON (--help output) is kept in stdout only
    }
    for (const wake of waiters) wake()
  })
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null, stderr: string, stdout: string }>((resolve) => {
    child.once('close', (code, signal) => {
      for (const wake of waiters) wake()
      resolve({ code, signal, stderr, stdout })
    })
  })

  const waitForLog = async (match: (line: Record<string, unknown>) => boolean, timeoutMs = 15_000): Promise<Record<string, unknown>> => {
    return await new Promise((resolve, reject) => {
      const check = (): void => {
        const found = logs.find(match)
        if (found !== undefined) {
          done()
          resolve(found)
        } else if (child.exitCode !== null || child.signalCode !== null) {
          done()
          reject(new Error(`ce-broker exited (${child.exitCode ?? child.signalCode}) before the expected log line; stderr: ${stderr}`))
        }
      }
      const timer = setTimeout(() => {
        done()
        reject(new Error(`no matching log line within ${timeoutMs} ms; stdout: ${stdout} stderr: ${stderr}`))
      }, timeoutMs)
      const done = (): void => {
        clearTimeout(timer)
        waiters.delete(check)
      }
      waiters.add(check)
      check()
    })
  }
  return { child, logs, waitForLog, exited }
}

/** A file holding `content` in a folder of its own, removed after the test. */
export async function tempFile (t: TestContext, name: string, content: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ce-broker-cli-'))
  defer(t, () => rm(dir, { recursive: true, force: true }))
  const path = join(dir, name)
  await writeFile(path, content)
  return path
}
