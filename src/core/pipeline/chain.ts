import type {
  AuthorizePublishHandler, AuthorizeSubscribeHandler, ConnectHandler, ConnectRefusedHandler, DeadLetterHandler, DecidedHandler, ForwardHandler, HookRegistry, PublishedHandler
} from '../context.js'
import { PluginError } from '../errors.js'

/**
 * The ordered handler lists behind aedes' single hook slots. Plugins append
 * through `registry`; the adapters in this folder fold each list into its slot.
 */
export class HookChains {
  readonly preConnect: ConnectHandler[] = []
  readonly authenticate: ConnectHandler[] = []
  readonly authorizePublish: AuthorizePublishHandler[] = []
  readonly authorizeSubscribe: AuthorizeSubscribeHandler[] = []
  readonly published: PublishedHandler[] = []
  readonly forward: ForwardHandler[] = []
  readonly decided: DecidedHandler[] = []
  readonly connectRefused: ConnectRefusedHandler[] = []
  readonly cloudEventTopics: Array<(topic: string) => boolean> = []
  #deadLetter: DeadLetterHandler | undefined
  /** Each authorizePublish handler's `idle`, in the chain's order. */
  readonly #publishIdle: Array<(() => boolean) | undefined> = []

  /** The view handed to plugins: they can add handlers, never read or reorder them. */
  readonly registry: HookRegistry = {
    preConnect: (handler) => { this.preConnect.push(handler) },
    authenticate: (handler) => { this.authenticate.push(handler) },
    authorizePublish: (handler, options) => {
      this.authorizePublish.push(handler)
      this.#publishIdle.push(options?.idle)
    },
    authorizeSubscribe: (handler) => { this.authorizeSubscribe.push(handler) },
    published: (handler) => { this.published.push(handler) },
    forward: (handler) => { this.forward.push(handler) },
    decided: (handler) => { this.decided.push(handler) },
    connectRefused: (handler) => { this.connectRefused.push(handler) },
    cloudEventTopics: (predicate) => { this.cloudEventTopics.push(predicate) },
    deadLetter: (handler) => {
      if (this.#deadLetter !== undefined) throw new PluginError(handler.name || 'deadLetter', 'a dead-letter handler is registered already')
      this.#deadLetter = handler
    }
  }

  /**
   * Whether no authorizePublish handler would do anything now: none at all, or each one
   * idle. An `idle` that throws is a plugin's bug, asked on aedes' publish path where a
   * throw would end the process: it is reported once through `onThrow` and never asked
   * again, its handler is never idle since (the chain runs, as without `idle`).
   */
  publishIdle (onThrow: (err: unknown, handler: string) => void): boolean {
    const idles = this.#publishIdle
    for (let i = 0; i < idles.length; i++) {
      const idle = idles[i]
      if (idle === undefined) return false
      try {
        if (!idle()) return false
      } catch (err: unknown) {
        idles[i] = undefined
        onThrow(err, this.authorizePublish[i]?.name ?? '')
        return false
      }
    }
    return true
  }

  /** The dead-letter handler, when a plugin registered one. */
  get deadLetter (): DeadLetterHandler | undefined {
    return this.#deadLetter
  }
}

type Step<A> = (arg: A) => Promise<void> | void

/**
 * Tell every handler of a notification chain (`decided`, `connectRefused`) in order.
 * A handler that throws is reported through `onThrow` and the rest still run: a
 * listener's bug never changes what was decided.
 */
export function tellEach<A extends unknown[]> (
  handlers: ReadonlyArray<(...args: A) => void>,
  args: A,
  onThrow: (err: unknown, handler: string) => void
): void {
  for (const handler of handlers) {
    try {
      handler(...args)
    } catch (err: unknown) {
      onThrow(err, handler.name)
    }
  }
}

/**
 * Run `chain` in order over `arg`. Synchronous handlers run back to back with no
 * promise in between; the first handler that returns a promise switches the rest
 * of the chain to async. Returns `undefined` when everything ran synchronously.
 * A synchronous throw propagates to the caller; an async one rejects.
 */
export function runChain<A> (chain: readonly Step<A>[], arg: A, from = 0): Promise<void> | undefined {
  for (let i = from; i < chain.length; i++) {
    const step = chain[i]
    if (step === undefined) continue
    const result = step(arg)
    if (result === undefined) continue
    // the last step's promise is the chain's: no extra promise per publish on the common one-handler chain
    if (i === chain.length - 1) return result
    return result.then(function nextStep () { return runChain(chain, arg, i + 1) })
  }
  return undefined
}

/**
 * Run a chain and report the outcome to a callback exactly once, whether the
 * chain finishes synchronously, asynchronously, throws or rejects. The callback
 * is never called inside the `try`, so an exception it raises is not mistaken for
 * a hook failure.
 */
export function settleChain<A> (
  chain: readonly Step<A>[],
  arg: A,
  onDone: () => void,
  onError: (err: unknown) => void
): void {
  let pending: Promise<void> | undefined
  let thrown: { err: unknown } | undefined
  try {
    pending = runChain(chain, arg)
  } catch (err: unknown) {
    thrown = { err }
  }
  if (thrown !== undefined) {
    onError(thrown.err)
  } else if (pending === undefined) {
    onDone()
  } else {
    // two-argument then: a throw inside onDone must not call onError as well
    pending.then(onDone, onError)
  }
}
