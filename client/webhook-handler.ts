import type { IncomingMessage, ServerResponse } from 'node:http'
import type { CloudEventV1 } from 'cloudevents'
import { InvalidWebhookEventError, WebhookVerificationError } from './errors.js'
import type { DataOf, EventMap, TypeOf } from './event.js'
import type { ProcessedStore } from './processed.js'
import { verifyWebhook, type VerifyOptions, type WebhookRequest } from './webhook.js'

/** A verified event of `T`, its `data` typed by the event map. */
export type TypedEvent<M extends EventMap, T extends string> = CloudEventV1<DataOf<M, T>> & { readonly type: T, readonly data: DataOf<M, T> }

export interface WebhookHandlerOptions extends VerifyOptions {
  /** The subscription's secret: every request must carry its Standard Webhooks signature. */
  readonly secret: string
  /** Remembers processed events (`memoryProcessedStore()`, `redisProcessedStore(redis)`), so that a redelivery runs its handler once. */
  readonly store?: ProcessedStore
  /**
   * A type no handler is registered for: `ignore` answers 200 (default); `gone` answers
   * 410, on which the broker disables the subscription (for a service that subscribed too wide).
   */
  readonly unknownTypes?: 'ignore' | 'gone'
  /** Told of each handler that threw (answered 500, so the broker retries). */
  readonly onError?: (err: unknown, event: CloudEventV1<unknown>) => void
}

/** What to answer the broker. */
export interface WebhookAnswer {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
}

export interface WebhookHandler<M extends EventMap = EventMap> {
  /** Run `handler` for events of `type`; it answers 2xx when it resolves and 500 when it throws (the broker retries). */
  on: <T extends TypeOf<M>>(type: T, handler: (event: TypedEvent<M, T>) => Promise<void> | void) => WebhookHandler<M>
  /** Verify, dedupe and dispatch one request; what to answer. */
  handle: (request: IncomingMessage | WebhookRequest) => Promise<WebhookAnswer>
  /** For `http.createServer(handler.listener)`: every request is a webhook. */
  readonly listener: (req: IncomingMessage, res: ServerResponse) => void
  /** Express middleware, behind `express.raw({ type: '*\/*' })`: `app.post('/hooks', express.raw({ type: '*\/*' }), handler.express)`. */
  readonly express: (req: IncomingMessage & { body?: unknown }, res: ServerResponse) => void
  /** A fastify route handler, in a scope whose body is kept raw (`addContentTypeParser('*', { parseAs: 'buffer' }, …)`). */
  readonly fastify: (request: { readonly headers: IncomingMessage['headers'], readonly body: unknown }, reply: FastifyReplyLike) => Promise<void>
}

/** What the fastify handler uses of a reply. */
export interface FastifyReplyLike {
  code: (status: number) => FastifyReplyLike
  headers: (values: Record<string, string>) => FastifyReplyLike
  send: (body: string) => unknown
}

/** The event's identity, per CloudEvents: its source and id. */
function keyOf (event: CloudEventV1<unknown>): string {
  return `${event.source} ${event.id}`
}

const NO_HEADERS: Readonly<Record<string, string>> = {}

function answer (status: number, body = '', headers = NO_HEADERS): WebhookAnswer {
  return { status, headers: body === '' ? headers : { 'content-type': 'text/plain; charset=utf-8', ...headers }, body }
}

/**
 * Typed webhook handlers with an idempotent consumer: each request is verified, its
 * event given to the handler of its type, and answered as the broker's retries expect:
 * 204 when the handler resolved, 500 when it threw, 401 when the signature does not
 * verify, 400 for what is no CloudEvent, 503 (Retry-After) while another delivery of
 * the same event is being handled, and 200 without running for an event processed before.
 */
export function createWebhookHandler<M extends EventMap = EventMap> (options: WebhookHandlerOptions): WebhookHandler<M> {
  const handlers = new Map<string, (event: CloudEventV1<unknown>) => Promise<void> | void>()

  async function dispatch (event: CloudEventV1<unknown>, run: (event: CloudEventV1<unknown>) => Promise<void> | void): Promise<WebhookAnswer> {
    const store = options.store
    const key = keyOf(event)
    const claim = store === undefined ? 'run' : await store.begin(key)
    if (claim === 'done') return answer(200, 'processed before')
    if (claim === 'running') return answer(503, 'being processed', { 'retry-after': '1' })
    try {
      await run(event)
    } catch (err: unknown) {
      await store?.abandon(key)
      options.onError?.(err, event)
      return answer(500, 'the handler failed')
    }
    await store?.finish(key)
    return answer(204)
  }

  async function handle (request: IncomingMessage | WebhookRequest): Promise<WebhookAnswer> {
    let event: CloudEventV1<unknown>
    try {
      event = await verifyWebhook(request, options.secret, options)
    } catch (err: unknown) {
      if (err instanceof WebhookVerificationError || err instanceof InvalidWebhookEventError) return answer(err.status, err.message)
      throw err
    }
    const run = handlers.get(event.type)
    if (run === undefined) return options.unknownTypes === 'gone' ? answer(410, `no handler for ${event.type}`) : answer(200, `no handler for ${event.type}`)
    return await dispatch(event, run)
  }

  function write (res: ServerResponse, request: IncomingMessage | WebhookRequest): void {
    handle(request).then((a) => { res.writeHead(a.status, a.headers).end(a.body) }, () => { res.writeHead(500).end() })
  }

  const self: WebhookHandler<M> = {
    on<T extends TypeOf<M>> (type: T, handler: (event: TypedEvent<M, T>) => Promise<void> | void): WebhookHandler<M> {
      // the map's types are checked at `on`; what is dispatched to it is the verified event of that type (its data the broker checked)
      handlers.set(type, async (event) => { await handler(event as unknown as TypedEvent<M, T>) })
      return self
    },
    handle,
    listener: (req, res) => { write(res, req) },
    express: (req, res) => { write(res, req) },
    fastify: async (request, reply) => {
      const a = await handle(request)
      reply.code(a.status).headers({ ...a.headers }).send(a.body)
    }
  }
  return self
}
