import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { BrokerError, EventRejectedError, type RejectReason } from '../errors.js'
import type { Logger } from '../logger.js'

/** The body of every HTTP error (PRODUCT §5). */
export interface ErrorBody {
  readonly error: { readonly code: string, readonly message: string, readonly details?: unknown }
}

/** How the API answers a `BrokerError`. */
export interface HttpAnswer {
  readonly status: number
  /** The body's `error.code`. */
  readonly code: string
  /**
   * Seconds to wait before sending again (`Retry-After`): the broker cannot take it now,
   * which is no fault of its own, so the message is shown and nothing is logged.
   */
  readonly retryAfter?: number
}

/** A refused event answers with its reason as the code. */
function rejected (status: number, reason: RejectReason): HttpAnswer {
  return { status, code: reason }
}

const INTERNAL: HttpAnswer = { status: 500, code: 'internal_error' }

/**
 * The one table of HTTP answers: by reason code when an error's reason has a row (a
 * refused event, `BRK_EVENT_REJECTED`), else by its `code`; an error with neither (an
 * embedder's own) is a 500.
 */
const TABLE = {
  payload_too_large: rejected(413, 'payload_too_large'),
  invalid_json: rejected(400, 'invalid_json'),
  invalid_cloudevent: rejected(400, 'invalid_cloudevent'),
  type_topic_mismatch: rejected(400, 'type_topic_mismatch'),
  no_matching_rule: rejected(400, 'no_matching_rule'),
  unknown_type: rejected(422, 'unknown_type'),
  schema_validation_failed: rejected(422, 'schema_validation_failed'),

  BRK_HTTP_BAD_REQUEST: { status: 400, code: 'bad_request' },
  BRK_HTTP_UNAUTHORIZED: { status: 401, code: 'unauthorized' },
  BRK_HTTP_FORBIDDEN: { status: 403, code: 'forbidden' },
  BRK_LIMIT_EXCEEDED: { status: 400, code: 'bad_request' },
  BRK_TOPIC_RESERVED: { status: 403, code: 'reserved_topic' },
  // expected while Redis is away (the transition is logged once): the sender retries
  BRK_UNAVAILABLE: { status: 503, code: 'unavailable', retryAfter: 1 },
  // a webhook subscription is behind: the sender slows down as an MQTT publisher is made to
  BRK_WEBHOOK_BACKLOG: { status: 429, code: 'too_many_requests', retryAfter: 1 },
  // a replayed dead letter whose event was accepted since: as a duplicate is no failure
  BRK_EVENT_DUPLICATE: { status: 200, code: 'internal_error' },
  // no route lets these through (the ACL leaves HTTP publishes to the API keys): their answer is kept as it was
  BRK_PUBLISH_NOT_AUTHORIZED: { status: 403, code: 'internal_error' },
  BRK_SUBSCRIBE_NOT_AUTHORIZED: { status: 403, code: 'internal_error' },
  BRK_CONFIG_INVALID: INTERNAL,
  BRK_PLUGIN_INVALID: INTERNAL,
  BRK_SCHEMA_FILE_INVALID: INTERNAL,
  BRK_LISTEN_FAILED: INTERNAL,
  BRK_DELIVERY_FAILED: INTERNAL,
  BRK_CONNECT_REFUSED: INTERNAL,
  BRK_WEBHOOK_ADDRESS_DENIED: INTERNAL,
  BRK_INTERNAL: INTERNAL
} satisfies Readonly<Record<RejectReason, HttpAnswer>> & Readonly<Record<string, HttpAnswer>>

/** The table by code and reason: a map, so that no key of `Object.prototype` is mistaken for a row. */
export const HTTP_ANSWERS: ReadonlyMap<string, HttpAnswer> = new Map(Object.entries(TABLE))

/** The status and `error.code` the API answers `err` with. */
export function httpAnswerOf (err: BrokerError): HttpAnswer {
  return HTTP_ANSWERS.get(err.reason) ?? HTTP_ANSWERS.get(err.code) ?? INTERNAL
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
    if (err instanceof BrokerError) {
      const answer = httpAnswerOf(err)
      const failed = answer.status >= 500 && answer.retryAfter === undefined
      if (failed) log.error({ err, method: req.method, url: req.url }, 'request failed')
      if (answer.retryAfter !== undefined) void reply.header('retry-after', String(answer.retryAfter))
      // a refused event thrown before its route could answer: its problems are the details, as routes answer them
      const details = err instanceof EventRejectedError ? err.problems : undefined
      void reply.code(answer.status).send(errorBody(answer.code, failed ? 'internal error' : err.message, details))
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
