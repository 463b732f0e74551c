import type { FastifyPluginAsync } from 'fastify'
import { dottedToFilter, errorBody, httpAnswerOf, topicFilterProblem } from '../../src/core/index.js'
import { replayEntry, type ReplaySource } from './replay.js'

export type { Redeliver } from './replay.js'

/** What the dead-letter routes use. */
export type DeadLetterSource = ReplaySource

const MAX_PAGE = 500

/**
 * `GET /api/dlq` (newest first, `?topic=` filter (MQTT or dotted), `?reason=`, `?limit=`, `?cursor=`),
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
    const { reason, cursor } = req.query
    // dotted, as a webhook's filters: albergue.v1.booking.* is albergue/v1/booking/#
    const topic = req.query.topic === undefined ? undefined : dottedToFilter(req.query.topic)
    const problem = topic === undefined ? undefined : topicFilterProblem(topic)
    if (problem !== undefined) return await reply.code(400).send(errorBody('bad_request', `topic filter ${JSON.stringify(req.query.topic)} ${problem}`))
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
    const replayed = await replayEntry(source, entry)
    switch (replayed.outcome) {
      case 'accepted': return { replayed: true, id: entry.id, topic: replayed.topic }
      case 'redelivering': return await reply.code(202).send({ redelivering: true, id: entry.id, subscription: replayed.subscription })
      case 'unredeliverable': return await reply.code(409).send(errorBody('conflict', replayed.why))
      case 'refused': {
        const refusal = replayed.error
        return await reply.code(httpAnswerOf(refusal).status).send(errorBody(refusal.reason, `replay of ${entry.id} rejected again: ${refusal.message}; kept with the new reason`, refusal.problems))
      }
    }
  })

  app.delete<{ Params: { id: string } }>('/api/dlq/:id', async (req, reply) => {
    if (!await deadLetters.delete(req.params.id)) return await reply.code(404).send(errorBody('not_found', `no dead letter with id ${JSON.stringify(req.params.id)}`))
    return await reply.code(204).send()
  })
}
