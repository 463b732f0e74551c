import type { MQEmitter } from 'mqemitter'

/** Nested message starts allowed before the next one waits for the next turn of the event loop. */
export const MAX_SYNC_DEPTH = 500

/**
 * Keep mqemitter's queue from recursing the process to death.
 *
 * mqemitter starts its next queued message from inside the completion of the
 * previous one. When completions are synchronous (no subscriber left for them),
 * a long queue recurses message by message, and through aedes each completion
 * also reads and routes the publisher's next packets, until the stack overflows
 * and the process dies with `RangeError: Maximum call stack size exceeded`. With
 * aedes 1.2 and mqemitter 7.1 that is what happens when a subscriber leaves
 * while publishers stream QoS 0 to it: raw Aedes dies too.
 *
 * This wraps the emitter's `_do` (its internal "start this message"): past
 * `MAX_SYNC_DEPTH` nested starts, the message starts on the next turn of the
 * event loop instead, which empties the stack. Its concurrency slot stays taken
 * meanwhile, so messages emitted in between queue behind it and order is kept.
 * `_do` is internal to mqemitter: if it is ever missing, start-up fails here
 * rather than the broker running unprotected.
 */
export function boundRecursion (mq: MQEmitter): MQEmitter {
  const start: unknown = Reflect.get(mq, '_do')
  if (typeof start !== 'function') throw new TypeError('mqemitter has no _do: its internals changed, review bounded-mq.ts')
  const run = (message: unknown, callback: unknown): void => {
    depth++
    try {
      Reflect.apply(start, mq, [message, callback])
    } finally {
      depth--
    }
  }
  // the slot of a waiting message stays taken, so emits in between queue behind it
  const holdSlot = (delta: 1 | -1): void => { Reflect.set(mq, 'current', Number(Reflect.get(mq, 'current')) + delta) }

  let depth = 0
  let scheduled = false
  /** Messages whose start was put off, in the order mqemitter asked for them. */
  const waiting: Array<readonly [unknown, unknown]> = []

  function startWaiting (): void {
    scheduled = false
    // a bounded batch per turn, so sockets and timers get their turn during a long drain
    for (let started = 0; started < MAX_SYNC_DEPTH; started++) {
      const next = waiting.shift()
      if (next === undefined) return
      holdSlot(-1)
      run(next[0], next[1])
    }
    if (waiting.length > 0) schedule()
  }
  function schedule (): void {
    if (scheduled) return
    scheduled = true
    setImmediate(startWaiting)
  }

  Reflect.set(mq, '_do', function boundedDo (message: unknown, callback: unknown): unknown {
    // once anything waits, everything after it waits too: messages start in order
    if (waiting.length > 0 || depth >= MAX_SYNC_DEPTH) {
      holdSlot(1)
      waiting.push([message, callback])
      schedule()
    } else {
      run(message, callback)
    }
    return mq
  })
  return mq
}
