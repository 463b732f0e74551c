import type { FastifyPluginAsync } from 'fastify'
import { BadRequestError, dottedToFilter, topicFilterProblem } from '../../src/core/index.js'

/** An accepted event as the trail lists it: its audit record (PRODUCT §3) without `outcome`, and its cursor. */
export interface RecentMessage {
  /** Opaque; `?since=<cursor>` gets the events after this one. */
  readonly cursor: string
  readonly topic: string
  readonly [field: string]: unknown
}

/** Where the recent events are read from: the audit trail (embedded, this node's ring; with Redis, the audit stream). */
export interface MessagesSource {
  readonly auditTrail: {
    /** Accepted events on topics `filter` matches, newest last: after `since` (exclusive) the oldest first, else the most recent; at most `limit`. */
    read: (filter: string, since: string | undefined, limit: number) => Promise<{ readonly messages: readonly RecentMessage[], readonly next: string }>
    /** The cursor of the newest entry. */
    head: () => Promise<string>
  }
}

/** Events per page when `?limit=` is not given. */
export const DEFAULT_MESSAGES_LIMIT = 100
/** The largest `?limit=`. */
export const MAX_MESSAGES_LIMIT = 1000

/**
 * The seed's polling API over the audit trail:
 * - `GET /api/mqtt/messages/:topic`: the recent accepted events on a topic or filter,
 *   given in MQTT form, percent-encoded in one segment (`albergue%2Fv1%2F%23`) or as
 *   path segments (`albergue/v1/%23`), or in dotted form (`albergue.v1.booking.*`);
 *   `?since=<cursor>&limit=N`. Answers `{ filter, messages, next }`, newest last.
 * - `POST /api/mqtt/subscribe` `{ topic }`: registers interest for polling, which
 *   needs no state on the server: answers 201 with the MQTT filter and where to poll
 *   from now on (`since` is the trail's newest cursor).
 */
export const messagesRoutes: FastifyPluginAsync<MessagesSource> = async function messagesRoutes (app, source) {
  app.get<{ Params: { '*': string }, Querystring: { since?: string, limit?: number } }>('/api/mqtt/messages/*', {
    schema: {
      querystring: {
        type: 'object',
        additionalProperties: false,
        properties: {
          since: { type: 'string', minLength: 1, maxLength: 64 },
          limit: { type: 'integer', minimum: 1, maximum: MAX_MESSAGES_LIMIT }
        }
      }
    }
  }, async (req) => {
    const filter = mqttFilter(req.params['*'])
    const page = await source.auditTrail.read(filter, req.query.since, req.query.limit ?? DEFAULT_MESSAGES_LIMIT)
    return { filter, messages: page.messages, next: page.next }
  })

  app.post<{ Body: { topic: string } }>('/api/mqtt/subscribe', {
    // the seed's legacy call registers interest for polling: it reads, it changes nothing
    config: { scope: 'read' },
    schema: {
      body: {
        type: 'object',
        required: ['topic'],
        properties: { topic: { type: 'string', minLength: 1 } }
      }
    }
  }, async (req, reply) => {
    const filter = mqttFilter(req.body.topic)
    const since = await source.auditTrail.head()
    return await reply.code(201).send({ topic: filter, since, poll: `/api/mqtt/messages/${encodeURIComponent(filter)}?since=${encodeURIComponent(since)}` })
  })
}

/** A topic or filter in MQTT or dotted form, as an MQTT filter; 400 naming it when it is none. */
function mqttFilter (given: string): string {
  const filter = dottedToFilter(given)
  const problem = topicFilterProblem(filter)
  if (problem !== undefined) throw new BadRequestError(`topic filter ${JSON.stringify(given)} ${problem}`)
  return filter
}
