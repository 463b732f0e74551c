import type { FastifyPluginAsync } from 'fastify'
import type { WebhookSubscriptionInput as WebhookBody } from '../../config.js'
import { errorBody } from '../errors.js'

/** What the webhook routes use: the broker's subscription registry. */
export interface WebhookSource {
  readonly webhooks: {
    /** Throws a `BadRequestError` naming what is wrong (URL, filter). */
    readonly register: (body: WebhookBody) => Promise<{ subscription: object, created: boolean }>
    readonly list: () => readonly object[]
    readonly remove: (id: string) => Promise<boolean>
  }
}

const retry = {
  type: 'object',
  additionalProperties: false,
  properties: {
    maxAttempts: { type: 'integer', minimum: 1, maximum: 100 },
    initialDelayMs: { type: 'integer', minimum: 0 },
    maxDelayMs: { type: 'integer', minimum: 0 }
  }
}

const subscriptionBody = {
  type: 'object',
  additionalProperties: false,
  required: ['service_id', 'webhook_url', 'topic_filters'],
  properties: {
    service_id: { type: 'string', minLength: 1 },
    webhook_url: { type: 'string', minLength: 1 },
    topic_filters: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } },
    secret: { type: 'string', minLength: 16 },
    mode: { enum: ['binary', 'structured'] },
    retry,
    timeoutMs: { type: 'integer', minimum: 1 }
  }
}

/**
 * `POST /api/webhooks` (201 when created, 200 when the same `service_id` + `webhook_url`
 * was updated), its seed alias `POST /api/mqtt/register-webhook`, `GET /api/webhooks`
 * (secrets never shown) and `DELETE /api/webhooks/:id`.
 */
export const webhookRoutes: FastifyPluginAsync<WebhookSource> = async function webhookRoutes (app, source) {
  const register = async (body: WebhookBody): Promise<{ status: number, subscription: object }> => {
    const { subscription, created } = await source.webhooks.register(body)
    return { status: created ? 201 : 200, subscription }
  }
  for (const path of ['/api/webhooks', '/api/mqtt/register-webhook']) {
    app.post<{ Body: WebhookBody }>(path, { schema: { body: subscriptionBody } }, async (req, reply) => {
      const { status, subscription } = await register(req.body)
      return await reply.code(status).send(subscription)
    })
  }
  app.get('/api/webhooks', async () => ({ subscriptions: source.webhooks.list() }))
  app.delete<{ Params: { id: string } }>('/api/webhooks/:id', async (req, reply) => {
    if (await source.webhooks.remove(req.params.id)) return await reply.code(204).send()
    return await reply.code(404).send(errorBody('not_found', `no webhook subscription ${JSON.stringify(req.params.id)}`))
  })
}
