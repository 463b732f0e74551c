/** Errors that refuse a client or a request: CONNECT, SUBSCRIBE, and the HTTP API's. */
import { BrokerError, errorCode } from './base.js'

const CONNECT_REFUSED = errorCode('BRK_CONNECT_REFUSED', 'a hook refused a CONNECT; carries the CONNACK `returnCode`')

/**
 * A CONNECT the broker refuses, carrying the MQTT 3.1.1 CONNACK return code
 * (2 identifier rejected, 3 server unavailable, 4 bad user name or password, 5 not authorized).
 */
export class ConnectRefusedError extends BrokerError {
  readonly code = CONNECT_REFUSED
  /** @param reason what the audit and the metrics call it: `bad_credentials`, `no_credentials`, `rate_limited`, `identifier_rejected`, ... */
  constructor (readonly returnCode: 2 | 3 | 4 | 5, message: string, override readonly reason = 'refused') {
    super(message)
  }
}

const SUBSCRIBE_NOT_AUTHORIZED = errorCode('BRK_SUBSCRIBE_NOT_AUTHORIZED', 'no ACL rule grants the client a filter it subscribes to: SUBACK 0x80 for that filter, the client stays connected')

/** A subscription no ACL rule grants: SUBACK 0x80 for that filter, the client stays connected. */
export class SubscribeNotAuthorizedError extends BrokerError {
  readonly code = SUBSCRIBE_NOT_AUTHORIZED
  constructor (readonly topic: string, readonly username: string | undefined) {
    super(`${username === undefined ? 'an anonymous client' : `user ${JSON.stringify(username)}`} may not subscribe to "${topic}"`)
  }
}

const HTTP_BAD_REQUEST = errorCode('BRK_HTTP_BAD_REQUEST', 'an HTTP request the route cannot use (400)')

/** A route received something it cannot use; answered with 4xx. */
export class BadRequestError extends BrokerError {
  readonly code = HTTP_BAD_REQUEST
}

const HTTP_UNAUTHORIZED = errorCode('BRK_HTTP_UNAUTHORIZED', 'an HTTP request without an API key, or with one that is not known, once `auth.apiKeys` are configured (401)')

/** 401: no API key, or one that is not known. */
export class UnauthorizedError extends BrokerError {
  readonly code = HTTP_UNAUTHORIZED
}

const HTTP_FORBIDDEN = errorCode('BRK_HTTP_FORBIDDEN', 'an HTTP request whose API key lacks the scope the route needs (403)')

/** 403: a known key without the scope the route needs. */
export class ForbiddenError extends BrokerError {
  readonly code = HTTP_FORBIDDEN
}
