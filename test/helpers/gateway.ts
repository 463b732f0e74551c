import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Readable } from 'node:stream'
import type { TestContext } from 'node:test'
import { defaultTextMapGetter, ROOT_CONTEXT, SpanKind, type SpanContext, type Tracer } from '@opentelemetry/api'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import express from 'express'
import Fastify from 'fastify'
import { gatewayInterceptor, gatewayMiddleware, type GatewayEvents, type GatewayOptions } from '../../client/index.js'
import { defer } from './cleanup.js'

/**
 * How the test's backend answers: `return` (the handler returns or `res.json`s the body),
 * `send` (`reply.send` / `res.send` of the object), `text` (the JSON text with a JSON
 * content type), `stream` (fastify: a stream; express: `writeHead` with the headers, then
 * `end`, as a piping proxy does).
 */
export type Answer = 'return' | 'send' | 'text' | 'stream'

/** What the backend route answers: the test says, as a backend's handler would decide. */
export interface BackendAnswer {
  readonly status?: number
  /** The `X-CloudEvents` header's value, as is. */
  readonly header?: string
  readonly body?: unknown
  readonly as?: Answer
}

export interface Gateway {
  readonly url: string
  readonly events: GatewayEvents
}

export type Framework = 'fastify' | 'express'

/** Each request in a server span of `tracer`, whose context lands in `spans`. */
export interface Tracing {
  readonly tracer: Tracer
  readonly spans: SpanContext[]
}

/**
 * A gateway of `framework` on 127.0.0.1, port 0, whose route `POST /respond` is the
 * backend: it answers what the request asks for. With `tracing`, each request runs in a
 * server span continuing the request's `traceparent`, as OpenTelemetry's HTTP
 * instrumentation does.
 */
export async function startGateway (t: TestContext, framework: Framework, options: GatewayOptions, tracing?: Tracing): Promise<Gateway> {
  const propagator = new W3CTraceContextPropagator()
  const traced = (handler: (req: IncomingMessage, res: ServerResponse) => void) => function inSpan (req: IncomingMessage, res: ServerResponse): void {
    if (tracing === undefined) {
      handler(req, res)
      return
    }
    const parent = propagator.extract(ROOT_CONTEXT, req.headers, defaultTextMapGetter)
    tracing.tracer.startActiveSpan(`${req.method ?? 'GET'} ${req.url ?? '/'}`, { kind: SpanKind.SERVER }, parent, (span) => {
      tracing.spans.push(span.spanContext())
      res.on('finish', () => { span.end() })
      handler(req, res)
    })
  }
  if (framework === 'fastify') {
    const app = Fastify({ serverFactory: (handler) => createServer(traced(handler)) })
    await app.register(gatewayInterceptor, options)
    // a route whose response schema knows `data` only: serializing would drop `events`
    app.post('/with-schema', { schema: { response: { 200: { type: 'object', properties: { data: {} } } } } }, async (request) => (request.body as BackendAnswer).body)
    app.post('/respond', async (request, reply) => {
      const answer = request.body as BackendAnswer
      void reply.code(answer.status ?? 200).header('x-backend', 'kept')
      if (answer.header !== undefined) void reply.header('X-CloudEvents', answer.header)
      if (answer.as === 'text') return await reply.type('application/json').send(JSON.stringify(answer.body))
      if (answer.as === 'stream') return await reply.type('application/json').send(Readable.from([JSON.stringify(answer.body)]))
      if (answer.as === 'send') return await reply.send(answer.body)
      return answer.body
    })
    await app.listen({ port: 0, host: '127.0.0.1' })
    defer(t, () => app.close())
    const { port } = app.server.address() as AddressInfo
    return { url: `http://127.0.0.1:${port}`, events: app.gatewayEvents }
  }

  const app = express()
  const middleware = gatewayMiddleware(options)
  app.use(express.json(), middleware)
  app.post('/respond', (req, res) => {
    const answer = req.body as BackendAnswer
    if (answer.as === 'stream') {
      res.writeHead(answer.status ?? 200, { 'content-type': 'application/json', 'x-backend': 'kept', ...(answer.header === undefined ? {} : { 'X-CloudEvents': answer.header }) })
      res.end(JSON.stringify(answer.body))
      return
    }
    res.status(answer.status ?? 200).set('x-backend', 'kept')
    if (answer.header !== undefined) res.set('X-CloudEvents', answer.header)
    if (answer.as === 'text') res.type('json').send(JSON.stringify(answer.body))
    else if (answer.as === 'send') res.send(answer.body)
    else res.json(answer.body)
  })
  const server = createServer(traced(app))
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  defer(t, async () => {
    server.closeAllConnections()
    await new Promise((resolve) => { server.close(resolve) })
  })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, events: middleware }
}

/** What the gateway's client got. */
export interface ClientView {
  readonly status: number
  readonly headers: Headers
  readonly text: string
}

/** Ask the gateway's backend for `answer`, as the gateway's client. */
export async function ask (gateway: Gateway, answer: BackendAnswer, headers: Record<string, string> = {}, path = '/respond'): Promise<ClientView> {
  const response = await fetch(`${gateway.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(answer) })
  return { status: response.status, headers: response.headers, text: await response.text() }
}
