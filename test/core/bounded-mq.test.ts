import assert from 'node:assert/strict'
import { test } from 'node:test'
import mqemitter, { type MQEmitter } from 'mqemitter'
import { boundRecursion } from '../../src/core/persistence/bounded-mq.js'

const QUEUED = 50_000

/**
 * What happens when a subscriber leaves under load: the emitter's concurrency is used
 * up by deliveries the subscriber holds, many messages queue behind them, then the
 * subscriber goes and its held deliveries complete. Resolves with the order in which
 * the queued messages completed.
 */
async function drainAfterSubscriberLeaves (mq: MQEmitter): Promise<number[]> {
  const held: Array<() => void> = []
  const listener = (_message: unknown, done: () => void): void => { held.push(done) }
  await new Promise<void>((resolve) => { mq.on('load/#', listener, resolve) })
  for (let i = 0; i < 100; i++) mq.emit({ topic: 'load/x' })
  const completed: number[] = []
  const all = new Promise<void>((resolve) => {
    for (let i = 0; i < QUEUED; i++) {
      mq.emit({ topic: 'load/x', n: i }, () => {
        completed.push(i)
        if (completed.length === QUEUED) resolve()
      })
    }
  })
  await new Promise<void>((resolve) => { mq.removeListener('load/#', listener, resolve) })
  for (const done of held) done()
  await all
  return completed
}

test('raw mqemitter overflows the stack draining a long queue with no subscriber left (why the bound exists)', async () => {
  await assert.rejects(drainAfterSubscriberLeaves(mqemitter({ concurrency: 100, matchEmptyLevels: true })), RangeError)
})

test('with the bound the same drain completes every queued message, in order', async () => {
  const mq = boundRecursion(mqemitter({ concurrency: 100, matchEmptyLevels: true }))
  const completed = await drainAfterSubscriberLeaves(mq)
  assert.equal(completed.length, QUEUED)
  assert.ok(completed.every((n, i) => n === i), 'completions kept emit order')
})

test('messages emitted while starts are put off queue behind them', async () => {
  const mq = boundRecursion(mqemitter({ concurrency: 1, matchEmptyLevels: true }))
  const seen: number[] = []
  let hold: (() => void) | undefined
  // the first delivery is held; every later one completes synchronously, the worst case for recursion
  await new Promise<void>((resolve) => {
    mq.on('t', (message, done) => {
      if (hold === undefined) {
        hold = done
        return
      }
      seen.push(Number(message.n))
      done()
    }, resolve)
  })
  const total = 5_000
  const finished = new Promise<void>((resolve) => {
    let left = total + 1
    const count = (): void => { if (--left === 0) resolve() }
    mq.emit({ topic: 't', n: -1 }, count)
    for (let n = 0; n < total / 2; n++) mq.emit({ topic: 't', n }, count)
    hold?.() // the queue drains past the bound: the rest is put off to later turns
    for (let n = total / 2; n < total; n++) mq.emit({ topic: 't', n }, count)
  })
  await finished
  assert.deepEqual(seen, Array.from({ length: total }, (_, n) => n))
})
