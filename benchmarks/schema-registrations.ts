/**
 * Schema registrations while a broker is loaded, for a scenario with `registrations`:
 * in the server process, a new version of one type's schema every `everyMs`, through
 * the broker's own HTTP API (`POST /api/schemas/<type>/versions`), so that what is
 * measured is the real path: HTTP, the compatibility check, the store's write, the
 * compile on the event loop and the change sent to every validation worker.
 */
import { performance } from 'node:perf_hooks'
import type { RegistrationCounters } from './protocol.js'
import type { SchemaRegistrations } from './scenarios.js'

/** Longest one registration may take to be answered, in ms; past it, it counts as `error`. */
const REQUEST_TIMEOUT_MS = 10_000
/** How much of an unexpected answer's body `firstProblem` keeps. */
const PROBLEM_CHARS = 300

/**
 * Registers `spec`'s versions one after another, one per tick of an `everyMs` interval,
 * and counts the answers. Never two at once: a tick while the registration before is
 * still unanswered is skipped (and counted), so a slow answer shows as fewer registrations,
 * not as a pile of them.
 */
export class SchemaRegistrar {
  readonly #url: string
  readonly #spec: SchemaRegistrations
  readonly #timer: NodeJS.Timeout
  readonly #otherwise = new Map<string, number>()
  #inFlight: Promise<void> | undefined
  #sent = 0
  #answered = 0
  #created = 0
  #skipped = 0
  #totalMs = 0
  #maxMs = 0
  #firstProblem: string | undefined

  private constructor (url: string, spec: SchemaRegistrations) {
    this.#url = url
    this.#spec = spec
    const registrar = this
    this.#timer = setInterval(function registerNext () { registrar.#tick() }, spec.everyMs)
  }

  /**
   * Start registering against the broker whose HTTP API is at `httpUrl`
   * (`http://127.0.0.1:<port>`), once a `GET` of the type's versions has answered 200:
   * the type is there to add versions to, and the process's `fetch` (undici, loaded on
   * first use) is warm before the load starts, so that its start-up is not counted.
   */
  static async start (httpUrl: string, spec: SchemaRegistrations): Promise<SchemaRegistrar> {
    const url = `${httpUrl}/api/schemas/${encodeURIComponent(spec.type)}/versions`
    const response = await fetch(url, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) })
    const text = await response.text()
    if (response.status !== 200) throw new Error(`GET ${url} answered ${response.status} ${text.slice(0, PROBLEM_CHARS)}: no ${spec.type} schema to add versions to`)
    return new SchemaRegistrar(url, spec)
  }

  /** What the registrations got so far. */
  counters (): RegistrationCounters {
    return {
      sent: this.#sent,
      answered: this.#answered,
      created: this.#created,
      otherwise: Object.fromEntries(this.#otherwise),
      ...(this.#firstProblem === undefined ? {} : { firstProblem: this.#firstProblem }),
      skipped: this.#skipped,
      totalMs: this.#totalMs,
      maxMs: this.#maxMs
    }
  }

  /** Register no more, and wait for the answer of the one in flight: then the broker can close. */
  async stop (): Promise<void> {
    clearInterval(this.#timer)
    await this.#inFlight
  }

  #tick (): void {
    if (this.#inFlight !== undefined) {
      this.#skipped++
      return
    }
    this.#inFlight = this.#register(++this.#sent).finally(() => { this.#inFlight = undefined })
  }

  /** Send the `n`th version; never rejects: every outcome is counted. */
  async #register (n: number): Promise<void> {
    const body = JSON.stringify(this.#spec.schema(n))
    const from = performance.now()
    try {
      const response = await fetch(this.#url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS)
      })
      const text = await response.text()
      const ms = performance.now() - from
      this.#answered++
      this.#totalMs += ms
      this.#maxMs = Math.max(this.#maxMs, ms)
      if (response.status === 201) this.#created++
      else this.#problem(String(response.status), `version ${n}: ${response.status} ${text.slice(0, PROBLEM_CHARS)}`)
    } catch (err: unknown) {
      this.#problem('error', `version ${n}: no answer: ${err instanceof Error ? err.message : String(err)}`)
    }
  }

  #problem (key: string, description: string): void {
    this.#otherwise.set(key, (this.#otherwise.get(key) ?? 0) + 1)
    this.#firstProblem ??= description
    // said at once, in the server's own stderr, whatever run.js makes of it later
    process.stderr.write(`server.js: schema registration ${description}\n`)
  }
}
