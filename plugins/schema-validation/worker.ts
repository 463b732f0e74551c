/**
 * A validation worker: compiles the registry it is given, then checks batches of
 * publishes (JSON.parse, envelope, schema) off the broker's event loop and answers
 * each batch with its refusals, in the order the batches came.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { createRuleCheck } from './check.js'
import type { EventSummary } from '../../src/core/index.js'
import { isChangeMessage, readItems, verdictOf, type CheckBatch, type Refusal, type WorkerMessage, type WorkerSetup } from './protocol.js'
import { SchemaRegistry } from './registry.js'

const port = parentPort
if (port === null) throw new Error('the validation worker runs in a worker thread')

// posted by pool.ts of the same build
const setup = workerData as WorkerSetup
const registry = SchemaRegistry.fromSnapshot(setup.registry)
const checkEvent = createRuleCheck(registry)

port.on('message', function checkBatch (batch: CheckBatch | unknown) {
  if (isChangeMessage(batch)) {
    // compiled by the main thread already: it compiles here too
    registry.apply(batch.change)
    return
  }
  if (!isCheckBatch(batch)) return
  const refused: Refusal[] = []
  const accepted: EventSummary[] = []
  readItems(Buffer.from(batch.bytes, 0, batch.used), batch.count, function checkItem (index, ruleIndex, topic, payload) {
    try {
      const rule = setup.rules[ruleIndex]
      if (rule === undefined) throw new Error(`no rule ${ruleIndex} for topic "${topic}"`)
      accepted.push(checkEvent(rule, topic, payload))
    } catch (err: unknown) {
      refused.push({ index, verdict: verdictOf(err) })
    }
  })
  port.postMessage({ type: 'verdicts', seq: batch.seq, refused, accepted } satisfies WorkerMessage)
})

port.postMessage({ type: 'ready' } satisfies WorkerMessage)

function isCheckBatch (message: unknown): message is CheckBatch {
  return typeof message === 'object' && message !== null && Reflect.get(message, 'bytes') instanceof SharedArrayBuffer
}
