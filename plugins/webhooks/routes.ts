import type { FastifyPluginAsync, FastifyRequest } from 'fastify'
import { BadRequestError, errorBody } from '../../src/core/index.js'
import type { WebhookSubscriptionInput as WebhookBody } from './config.js'
import { InvalidFilterError } from './filters/index.js'

/** What the webhook routes use: the broker's subscription registry. */
export interface WebhookSource {
  readonly webhooks: {
    /** Throws a `BadRequestError` naming what is wrong (URL, topic filter; an `InvalidFilterError` for the attribute filters). */
    readonly register: (body: WebhookBody) => Promise<{ subscription: object, created: boolean }>
    readonly list: () => readonly object[]
    readonly remove: (id: string) => Promise<boolean>
  }
}

/** An object schema whose keys are all listed: any other key is refused by name. */
interface ClosedObjectSchema {
  readonly type: 'object'
  readonly additionalProperties: false
  readonly required?: readonly string[]
  readonly properties: Readonly<Record<string, object>>
}

const retry: ClosedObjectSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    maxAttempts: { type: 'integer', minimum: 1, maximum: 100 },
    initialDelayMs: { type: 'integer', minimum: 0 },
    maxDelayMs: { type: 'integer', minimum: 0 }
  }
}

const subscriptionBody: ClosedObjectSchema = {
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
    timeoutMs: { type: 'integer', minimum: 1 },
    ordering: { enum: ['none', 'partitionkey', 'subject'] },
    handshake: { type: 'boolean' },
    // checked by ./filters/, whose errors name the filter's path and the position in an expression
    filters: { type: 'array' }
  }
}

/**
 * The first key of `value` that `schema` (or an object schema within it) does not list,
 * as a message naming its path and the keys that are known, as the config file's
 * errors do. fastify's validator would drop such a key without a word, and a
 * subscription asking for something the broker cannot do would look registered.
 */
function unknownKey (value: unknown, schema: ClosedObjectSchema, path: string): string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined
  for (const [key, child] of Object.entries(value)) {
    const inner = Object.hasOwn(schema.properties, key) ? schema.properties[key] : undefined
    if (inner === undefined) return `${path}${key} is not a known key; known keys: ${Object.keys(schema.properties).join(', ')}`
    const found = isClosedObject(inner) ? unknownKey(child, inner, `${path}${key}.`) : undefined
    if (found !== undefined) return found
  }
  return undefined
}

function isClosedObject (schema: object): schema is ClosedObjectSchema {
  return 'additionalProperties' in schema && schema.additionalProperties === false && 'properties' in schema
}

/** Runs before the body schema, which would strip unknown keys (fastify's `removeAdditional`). */
async function refuseUnknownKeys (req: FastifyRequest): Promise<void> {
  const problem = unknownKey(req.body, subscriptionBody, '')
  if (problem !== undefined) throw new BadRequestError(problem)
}

/**
 * `POST /api/webhooks` (201 when created, 200 when the same `service_id` + `webhook_url`
 * was updated), its seed alias `POST /api/mqtt/register-webhook`, `GET /api/webhooks`
 * (secrets never shown) and `DELETE /api/webhooks/:id`. A key the body may not have is
 * a 400 naming it; so are attribute filters that do not compile, with `details`
 * `{ path, line?, column? }`.
 */
export const webhookRoutes: FastifyPluginAsync<WebhookSource> = async function webhookRoutes (app, source) {
  const register = async (body: WebhookBody): Promise<{ status: number, subscription: object }> => {
    const { subscription, created } = await source.webhooks.register(body)
    return { status: created ? 201 : 200, subscription }
  }
  for (const path of ['/api/webhooks', '/api/mqtt/register-webhook']) {
    app.post<{ Body: WebhookBody }>(path, { schema: { body: subscriptionBody }, preValidation: refuseUnknownKeys }, async (req, reply) => {
      try {
        const { status, subscription } = await register(req.body)
        return await reply.code(status).send(subscription)
      } catch (err: unknown) {
        // the filter's path, and where in its expression, for a client to point at
        if (err instanceof InvalidFilterError) return await reply.code(400).send(errorBody('bad_request', err.message, err.details))
        throw err
      }
    })
  }
  app.get('/api/webhooks', async () => ({ subscriptions: source.webhooks.list() }))
  app.delete<{ Params: { id: string } }>('/api/webhooks/:id', async (req, reply) => {
    if (await source.webhooks.remove(req.params.id)) return await reply.code(204).send()
    return await reply.code(404).send(errorBody('not_found', `no webhook subscription ${JSON.stringify(req.params.id)}`))
  })
}
