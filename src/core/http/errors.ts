import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { BrokerError, EventRejectedError, UnavailableError } from '../errors.js'
import type { Logger } from '../logger.js'

/** The body of every HTTP error (PRODUCT §5). */
export interface ErrorBody {
  readonly error: { readonly code: string, readonly message: string, readonly details?: unknown }
}

/** BrokerError code → HTTP `error.code`; the status comes from the error itself. */
const HTTP_CODES: Readonly<Record<string, string>> = {
  BRK_HTTP_BAD_REQUEST: 'bad_request',
  BRK_HTTP_UNAUTHORIZED: 'unauthorized',
  BRK_HTTP_FORBIDDEN: 'forbidden',
  BRK_LIMIT_EXCEEDED: 'bad_request',
  BRK_TOPIC_RESERVED: 'reserved_topic',
  BRK_CONFIG_INVALID: 'internal_error',
  BRK_PLUGIN_INVALID: 'internal_error',
  BRK_INTERNAL: 'internal_error'
}

/** HTTP status → `error.code` for errors raised by fastify itself (parsing, limits, content types). */
const STATUS_CODES: Readonly<Record<number, string>> = {
  400: 'bad_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  406: 'not_acceptable',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  429: 'too_many_requests',
  503: 'unavailable'
}

export function errorBody (code: string, message: string, details?: unknown): ErrorBody {
  return { error: details === undefined ? { code, message } : { code, message, details } }
}

/** fastify's error handler: every error becomes `{ error: { code, message, details? } }`. */
export function makeErrorHandler (log: Logger) {
  return function httpError (err: FastifyError | BrokerError, req: FastifyRequest, reply: FastifyReply): void {
    if (err instanceof UnavailableError) {
      // expected while Redis is away (the transition is logged once): the sender retries
      void reply.code(503).header('retry-after', '1').send(errorBody('unavailable', err.message))
      return
    }
    if (err instanceof EventRejectedError) {
      // a refused event thrown before its route could answer: the reason is the code, as routes answer it
      void reply.code(err.statusCode).send(errorBody(err.reason, err.message, err.problems))
      return
    }
    if (err instanceof BrokerError) {
      const status = err.statusCode
      if (status >= 500) log.error({ err, method: req.method, url: req.url }, 'request failed')
      void reply.code(status).send(errorBody(HTTP_CODES[err.code] ?? 'internal_error', status >= 500 ? 'internal error' : err.message))
      return
    }
    if (err.validation !== undefined) {
      void reply.code(400).send(errorBody('bad_request', err.message, err.validation.map((v) => ({ path: v.instancePath, message: v.message }))))
      return
    }
    const status = typeof err.statusCode === 'number' && err.statusCode >= 400 ? err.statusCode : 500
    if (status >= 500) {
      log.error({ err, method: req.method, url: req.url }, 'request failed')
      void reply.code(status).send(errorBody('internal_error', 'internal error'))
      return
    }
    void reply.code(status).send(errorBody(STATUS_CODES[status] ?? 'bad_request', err.message))
  }
}

/** fastify's not-found handler: 404s are JSON too. */
export function notFound (req: FastifyRequest, reply: FastifyReply): void {
  void reply.code(404).send(errorBody('not_found', `no route for ${req.method} ${req.url.split('?')[0] ?? ''}`))
}
