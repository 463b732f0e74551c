import type { FastifyPluginAsync } from 'fastify'
import { BadRequestError } from '../../errors.js'
import { viewPayload } from '../../payload.js'
import type { RetainedMessage } from '../../persistence/index.js'
import { topicFilterProblem } from '../../topics.js'

/** Where retained messages are read from: the persistence, so every node of a cluster answers alike. */
export interface RetainedSource {
  readonly retained: (filter: string, limit: number) => Promise<RetainedMessage[]>
}

const DEFAULT_LIMIT = 100
const MAX_LIMIT = 1000

/**
 * `GET /api/mqtt/retained/:topic`: the retained messages on a topic or filter, what a
 * new subscriber would get (the recent events are `GET /api/mqtt/messages/:topic`).
 * The topic may be sent percent-encoded in one segment (`albergue%2Fv1%2F%23`)
 * or as plain path segments (`albergue/v1/%23`); `#` must be encoded either way.
 */
export const retainedRoutes: FastifyPluginAsync<RetainedSource> = async function retainedRoutes (app, source) {
  app.get<{ Params: { '*': string }, Querystring: { limit?: number } }>('/api/mqtt/retained/*', {
    schema: {
      querystring: {
        type: 'object',
        additionalProperties: false,
        properties: { limit: { type: 'integer', minimum: 1, maximum: MAX_LIMIT } }
      }
    }
  }, async (req) => {
    const filter = req.params['*']
    const problem = topicFilterProblem(filter)
    if (problem !== undefined) throw new BadRequestError(`topic filter ${JSON.stringify(filter)} ${problem}`)
    const messages = await source.retained(filter, req.query.limit ?? DEFAULT_LIMIT)
    return {
      filter,
      messages: messages.map((m) => ({ topic: m.topic, qos: m.qos, ...viewPayload(m.payload) }))
    }
  })
}
