import assert from 'node:assert/strict'
import { test } from 'node:test'
import mqemitter from 'mqemitter'
import { watchSystemTopics } from '../../src/core/persistence/system-interest.js'

const noop = (_message: unknown, done: () => void): void => { done() }

test('a $ top level is listened to while a filter under it has a listener', async () => {
  const mq = mqemitter()
  const listening = watchSystemTopics(mq)
  assert.equal(listening('$audit'), false)

  // + and # at the first level never match $ topics
  mq.on('#', noop)
  mq.on('+/albergue/#', noop)
  assert.equal(listening('$audit'), false)

  const other = (_message: unknown, done: () => void): void => { done() }
  mq.on('$audit/#', noop)
  mq.on('$audit', other)
  assert.equal(listening('$audit'), true)
  assert.equal(listening('$DLQ'), false)

  mq.removeListener('$audit/#', noop)
  assert.equal(listening('$audit'), true, '"$audit" still has a listener')
  // removing what was never added changes nothing
  mq.removeListener('$audit', noop)
  mq.removeListener('$audit/x', other)
  assert.equal(listening('$audit'), true)
  mq.removeListener('$audit', other)
  assert.equal(listening('$audit'), false)

  // the emitter still routes: the wrappers pass everything on
  const got: unknown[] = []
  mq.on('$audit/albergue/#', (message, done) => { got.push(message.topic); done() })
  await new Promise<void>((resolve) => { mq.emit({ topic: '$audit/albergue/x' }, () => { resolve() }) })
  assert.deepEqual(got, ['$audit/albergue/x'])
  await new Promise<void>((resolve) => { mq.close(resolve) })
})
