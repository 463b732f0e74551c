import { fork, type ChildProcess, type Serializable } from 'node:child_process'

/** How a child process ended. */
export interface ChildExit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

interface Waiter<M> {
  /** Takes `message` and settles the wait if it is the awaited one; says whether it did. */
  readonly consume: (message: M) => boolean
  readonly reject: (err: Error) => void
}

/**
 * A forked benchmark process: its IPC messages narrowed by `accept`, bounded waits
 * for a given message or for its exit, and a stop that escalates to SIGKILL.
 * The child's stdout goes to our stderr: stdout carries only the `bench` lines.
 */
export class Child<M> {
  /** Resolves when the process has exited, however it ended. */
  readonly exited: Promise<ChildExit>
  readonly #process: ChildProcess
  readonly #label: string
  readonly #waiters = new Set<Waiter<M>>()
  #nextId = 1
  #exit: ChildExit | undefined

  /**
   * @param script compiled `.js` file to run, next to the caller (`new URL('./x.js', import.meta.url)`)
   * @param accept narrows an IPC message; other messages fail the child's waits
   * @param onMessage sees every accepted message, before any waiter does
   * @param execArgv node flags for the child (`--cpu-prof`, ...)
   */
  constructor (label: string, script: URL, args: readonly string[], accept: (message: unknown) => message is M, onMessage?: (message: M) => void, execArgv: readonly string[] = []) {
    this.#label = label
    this.#process = fork(script, args, { stdio: ['ignore', 2, 2, 'ipc'], execArgv: [...execArgv] })
    const child = this
    this.#process.on('message', function onChildMessage (message: unknown) {
      if (!accept(message)) {
        child.#rejectAll(new Error(`${label}: unexpected message ${JSON.stringify(message)}`))
        return
      }
      onMessage?.(message)
      for (const waiter of child.#waiters) {
        if (waiter.consume(message)) child.#waiters.delete(waiter)
      }
    })
    this.exited = new Promise<ChildExit>((resolve) => {
      this.#process.once('exit', function onChildExit (code: number | null, signal: NodeJS.Signals | null) {
        child.#exit = { code, signal }
        child.#rejectAll(new Error(`${label}: exited (${describe(child.#exit)}) while awaited`))
        resolve(child.#exit)
      })
    })
    // 'error' covers a failed spawn or kill; the exit (or the wait's timeout) reports the consequence
    this.#process.on('error', function onChildError (err: Error) { child.#rejectAll(new Error(`${label}: ${err.message}`, { cause: err })) })
  }

  /** The next message that `match` accepts; rejects on timeout or if the child exits first. */
  async next<T extends M> (match: (message: M) => message is T, timeoutMs: number): Promise<T> {
    if (this.#exit !== undefined) throw new Error(`${this.#label}: already exited (${describe(this.#exit)})`)
    const label = this.#label
    const waiters = this.#waiters
    return await new Promise<T>((resolve, reject) => {
      const waiter: Waiter<M> = {
        consume: function consume (message) {
          if (!match(message)) return false
          clearTimeout(timer)
          resolve(message)
          return true
        },
        reject: function rejected (err) { clearTimeout(timer); reject(err) }
      }
      const timer = setTimeout(function waitTimedOut () {
        waiters.delete(waiter)
        reject(new Error(`${label}: no awaited message within ${timeoutMs} ms`))
      }, timeoutMs)
      waiters.add(waiter)
    })
  }

  /**
   * Ask the child something: send `request` with an `id` of its own and wait for the
   * message of that `type` carrying the same id.
   */
  async ask<T extends M & { readonly id: number }> (request: Readonly<Record<string, Serializable>>, isAnswer: (message: M) => message is T, timeoutMs: number): Promise<T> {
    const id = this.#nextId++
    const answer = this.next((message): message is T => isAnswer(message) && message.id === id, timeoutMs)
    this.send({ ...request, id })
    return await answer
  }

  /** Send an IPC message; dropped if the child has already gone (its exit is reported elsewhere). */
  send (message: Serializable): void {
    if (this.#process.connected) this.#process.send(message)
  }

  /** Wait for the child to exit on its own; rejects on timeout or a non-zero exit. */
  async ended (timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const label = this.#label
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(function exitTimedOut () { reject(new Error(`${label}: did not exit within ${timeoutMs} ms`)) }, timeoutMs)
    })
    try {
      const exit = await Promise.race([this.exited, timeout])
      if (exit.code !== 0) throw new Error(`${label}: exited with ${describe(exit)}`)
    } finally {
      clearTimeout(timer)
    }
  }

  /** SIGTERM, then wait for a clean (code 0) exit; SIGKILL and reject after `timeoutMs`. */
  async stop (timeoutMs: number): Promise<void> {
    if (this.#exit === undefined) this.#process.kill('SIGTERM')
    try {
      await this.ended(timeoutMs)
    } finally {
      this.kill()
    }
  }

  /** SIGKILL if it is still running; for cleanup after a failure. */
  kill (): void {
    if (this.#exit === undefined && this.#process.exitCode === null && this.#process.signalCode === null) this.#process.kill('SIGKILL')
  }

  #rejectAll (err: Error): void {
    const waiters = [...this.#waiters]
    this.#waiters.clear()
    for (const waiter of waiters) waiter.reject(err)
  }
}

function describe (exit: ChildExit): string {
  return exit.signal === null ? `code ${String(exit.code)}` : `signal ${exit.signal}`
}
