/**
 * A validation worker: compiles the registry it is given, then checks batches of
 * publishes (JSON.parse, envelope, schema) off the broker's event loop and answers
 * each batch with its refusals, in the order the batches came.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { createRuleCheck } from './check.js'
import type { EventSummary } from '../../src/core/index.js'
import { readItems, verdictOf, type CheckBatch, type Refusal, type WorkerMessage, type WorkerSetup } from './protocol.js'
import { SchemaRegistry } from './registry.js'

const port = parentPort
if (port === null) throw new Error('the validation worker runs in a worker thread')

// posted by pool.ts of the same build
const setup = workerData as WorkerSetup
const checkEvent = createRuleCheck(SchemaRegistry.compile(setup.documents))

port.on('message', function checkBatch (batch: CheckBatch) {
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
