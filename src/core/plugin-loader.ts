import { ConfigError, PluginError, SchemaFileError, messageOf } from './errors.js'
import type { Dispose, PluginContext, PluginEntry } from './context.js'

/**
 * Loads plugins one after another in the given order, each setup under a
 * timeout, checking `dependsOn` against what is already loaded; disposes them in
 * reverse order.
 */
export class PluginLoader {
  readonly #loaded: Array<{ readonly name: string, readonly dispose: Dispose | undefined }> = []

  /**
   * @param contextFor builds the context a plugin gets
   * @param timeoutMs longest a setup may take
   * @param reportError where dispose failures go (close() carries on with the others)
   */
  constructor (
    private readonly contextFor: (entry: PluginEntry) => PluginContext,
    private readonly timeoutMs: number,
    private readonly reportError: (err: unknown, context: Readonly<Record<string, unknown>>) => void
  ) {}

  /** Load `entries` in order; throws a `PluginError` naming the plugin at the first failure. */
  async load (entries: readonly PluginEntry[]): Promise<void> {
    for (const entry of entries) {
      const names = this.#loaded.map((p) => p.name)
      if (names.includes(entry.name)) throw new PluginError(entry.name, 'is loaded twice')
      for (const dependency of entry.dependsOn) {
        if (!names.includes(dependency)) {
          throw new PluginError(entry.name, `depends on "${dependency}", which must be loaded before it (loaded: ${names.join(', ') || 'none'})`)
        }
      }
      this.#loaded.push({ name: entry.name, dispose: await this.#start(entry) })
    }
  }

  /**
   * Dispose every loaded plugin, last loaded first. One failure does not stop the
   * others, nor does one that hangs (a queue closing on an unreachable Redis): each
   * stop gets the setup's timeout, then the next plugin releases what it holds.
   */
  async disposeAll (): Promise<void> {
    for (let plugin = this.#loaded.pop(); plugin !== undefined; plugin = this.#loaded.pop()) {
      const { name, dispose } = plugin
      if (dispose === undefined) continue
      try {
        await this.#bounded(dispose(), () => new PluginError(name, `stop did not finish within ${this.timeoutMs} ms; the next plugins stop anyway`))
      } catch (err: unknown) {
        this.reportError(err, { plugin: name, phase: 'dispose' })
      }
    }
  }

  /** `work`, or the error `late` makes once `timeoutMs` have passed. */
  async #bounded<T> (work: Promise<T>, late: () => Error): Promise<T> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(late()) }, this.timeoutMs) })
    try {
      return await Promise.race([work, timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  async #start (entry: PluginEntry): Promise<Dispose | undefined> {
    try {
      return await this.#bounded(entry.start(this.contextFor(entry)), () => new PluginError(entry.name, `setup did not finish within ${this.timeoutMs} ms`))
    } catch (err: unknown) {
      // a setup that finds its config wrong stops start-up with the error naming the key or file
      if (err instanceof PluginError || err instanceof ConfigError || err instanceof SchemaFileError) throw err
      throw new PluginError(entry.name, `setup failed: ${messageOf(err)}`, { cause: err })
    }
  }
}
