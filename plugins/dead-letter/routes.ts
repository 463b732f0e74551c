import type { FastifyPluginAsync } from 'fastify'
import { EventRejectedError, errorBody, httpAnswerOf, topicFilterProblem, type BrokerError, type OutgoingMessage, type SubmitOptions } from '../../src/core/index.js'
import type { DeadLetterEntry, DeadLetterStore } from './store.js'

/**
 * Deliver a dead letter again to the one destination it failed at (a webhook
 * subscription): why it cannot (the subscription is gone or disabled, not a
 * CloudEvent), or `undefined` when it is queued.
 */
export type Redeliver = (entry: DeadLetterEntry) => string | undefined

/** What the dead-letter routes use. */
export interface DeadLetterSource {
  readonly deadLetters: DeadLetterStore
  /** The whole publish pipeline, as for a client publish. */
  readonly submit: (message: OutgoingMessage, options: SubmitOptions) => Promise<BrokerError | undefined>
  /** Who redelivers a dead letter of this reason instead of publishing it again (the delivery reasons: the webhooks). */
  readonly redeliverers: ReadonlyMap<string, Redeliver>
}

const MAX_PAGE = 500

/**
 * Reasons of an event accepted once whose delivery to one webhook subscription failed
 * (`delivery_failed`), ran past its time-to-live (`expired`) or found the queue full
 * (`queue_full`): a replay delivers it to that subscription only, never publishes it again.
 */
const DELIVERY_REASONS: ReadonlySet<string> = new Set(['delivery_failed', 'expired', 'queue_full'])

/**
 * `GET /api/dlq` (newest first, `?topic=` filter, `?reason=`, `?limit=`, `?cursor=`),
 * `POST /api/dlq/:id/replay` (the whole pipeline again: removed when accepted, kept with
 * the new reason when not; a `delivery_failed`, `expired` or `queue_full` record is
 * delivered again to its subscription only, removed once delivered) and `DELETE /api/dlq/:id`.
 */
export const deadLetterRoutes: FastifyPluginAsync<DeadLetterSource> = async function deadLetterRoutes (app, source) {
  const { deadLetters } = source

  app.get<{ Querystring: { topic?: string, reason?: string, limit?: number, cursor?: string } }>('/api/dlq', {
    schema: {
      querystring: {
        type: 'object',
        additionalProperties: false,
        properties: {
          topic: { type: 'string', minLength: 1 },
          reason: { type: 'string', minLength: 1 },
          limit: { type: 'integer', minimum: 1, maximum: MAX_PAGE },
          cursor: { type: 'string', minLength: 1 }
        }
      }
    }
  }, async (req, reply) => {
    const { topic, reason, cursor } = req.query
    const problem = topic === undefined ? undefined : topicFilterProblem(topic)
    if (problem !== undefined) return await reply.code(400).send(errorBody('bad_request', `topic filter ${JSON.stringify(topic)} ${problem}`))
    const page = await deadLetters.list({
      limit: req.query.limit ?? 50,
      ...(topic === undefined ? {} : { topic }),
      ...(reason === undefined ? {} : { reason }),
      ...(cursor === undefined ? {} : { cursor })
    })
    return {
      items: page.items.map((entry) => ({ id: entry.id, record: entry.record })),
      ...(page.next === undefined ? {} : { next: page.next })
    }
  })

  app.post<{ Params: { id: string } }>('/api/dlq/:id/replay', async (req, reply) => {
    const entry = await deadLetters.get(req.params.id)
    if (entry === undefined) return await reply.code(404).send(errorBody('not_found', `no dead letter with id ${JSON.stringify(req.params.id)}`))
    const { original } = entry
    const { reason, subscription } = entry.record.data
    if (subscription !== undefined && DELIVERY_REASONS.has(reason)) {
      // the event was accepted once: only its delivery to that subscription is replayed
      const redeliver = source.redeliverers.get(reason)
      const why = redeliver === undefined ? 'webhooks are not running' : redeliver(entry)
      if (why !== undefined) return await reply.code(409).send(errorBody('conflict', why))
      return await reply.code(202).send({ redelivering: true, id: entry.id, subscription })
    }
    const refusal = await source.submit(
      { topic: original.topic, payload: original.payload, qos: original.qos, retain: original.retain },
      { origin: 'http', clientId: original.clientId, replayOf: entry.id }
    )
    if (refusal === undefined) {
      await deadLetters.delete(entry.id)
      return { replayed: true, id: entry.id, topic: original.topic }
    }
    if (refusal instanceof EventRejectedError) {
      return await reply.code(httpAnswerOf(refusal).status).send(errorBody(refusal.reason, `replay of ${entry.id} rejected again: ${refusal.message}; kept with the new reason`, refusal.problems))
    }
    throw refusal
  })

  app.delete<{ Params: { id: string } }>('/api/dlq/:id', async (req, reply) => {
    if (!await deadLetters.delete(req.params.id)) return await reply.code(404).send(errorBody('not_found', `no dead letter with id ${JSON.stringify(req.params.id)}`))
    return await reply.code(204).send()
  })
}
