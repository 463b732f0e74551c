import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'
import { HTTP, type CloudEventV1 } from 'cloudevents'
import { InvalidWebhookEventError } from './errors.js'
import { verifySignature, webhookKey } from './signature.js'

/**
 * A webhook request as frameworks hand it over: its headers and its raw body. Express
 * gives the raw body with `express.raw({ type: '*\/*' })`, fastify with a content-type
 * parser `{ parseAs: 'buffer' }`; a body parsed as JSON cannot be verified (the signature
 * is over the bytes), and is refused with that said.
 */
export interface WebhookRequest {
  readonly headers: IncomingHttpHeaders
  readonly body?: unknown
}

export interface VerifyOptions {
  /** A body read from the request stream past this many bytes is refused (default 1 MiB). */
  readonly maxBodyBytes?: number
}

const DEFAULT_MAX_BODY_BYTES = 1024 * 1024

/** One key per secret: decoding a `whsec_` secret is not per request. */
const keys = new Map<string, Buffer>()

function keyOf (secret: string): Buffer {
  let key = keys.get(secret)
  if (key === undefined) {
    key = webhookKey(secret)
    if (key.length === 0) throw new TypeError('the webhook secret is empty')
    if (keys.size >= 64) keys.clear()
    keys.set(secret, key)
  }
  return key
}

/**
 * Verify a webhook request's Standard Webhooks signature (`webhook-id`,
 * `webhook-timestamp` within 5 minutes, `webhook-signature`) with the subscription's
 * `secret`, and return its CloudEvent, binary or structured mode. Throws a
 * `WebhookVerificationError` (answer 401) or an `InvalidWebhookEventError` (400).
 * Works with Node's `http` request (the body is read from it), express and fastify.
 */
export async function verifyWebhook (request: IncomingMessage | WebhookRequest, secret: string, options: VerifyOptions = {}): Promise<CloudEventV1<unknown>> {
  const body = await rawBody(request, options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES)
  const headers = flatHeaders(request.headers)
  // over the bytes: the body of a binary-mode delivery is the event's data, JSON or not (octet-stream, text)
  verifySignature(keyOf(secret), headers, body)
  try {
    const event = HTTP.toEvent({ headers, body: isText(headers['content-type']) ? body.toString('utf8') : body })
    if (Array.isArray(event)) throw new TypeError('a batch of events: the broker sends one event per request')
    return event
  } catch (err: unknown) {
    throw new InvalidWebhookEventError(`not a CloudEvent: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  }
}

/** The request's body bytes: given by the framework, or read from Node's request stream. */
async function rawBody (request: IncomingMessage | WebhookRequest, max: number): Promise<Buffer> {
  const given: unknown = 'body' in request ? request.body : undefined
  if (Buffer.isBuffer(given)) return given
  if (typeof given === 'string') return Buffer.from(given, 'utf8')
  if (given !== undefined && given !== null) {
    throw new InvalidWebhookEventError('the body was parsed already: the signature is over its bytes; give the raw body (express.raw({ type: \'*/*\' }), or a fastify content-type parser with parseAs: \'buffer\')')
  }
  if (!isReadable(request)) return Buffer.alloc(0)
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of request) {
    const bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk))
    size += bytes.length
    if (size > max) throw new InvalidWebhookEventError(`the body is over ${max} bytes`)
    chunks.push(bytes)
  }
  return Buffer.concat(chunks)
}

/**
 * Whether a body of this content type is text: JSON (structured mode too), `text/*`, or
 * none given. Any other (a binary-mode delivery of `data_base64`, `application/octet-stream`)
 * is given to the SDK as its bytes, so the event's `data` is what was published, not
 * its bytes decoded as UTF-8.
 */
function isText (contentType: string | undefined): boolean {
  const type = (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? ''
  return type === '' || type.startsWith('text/') || type === 'application/json' || type.endsWith('+json')
}

function isReadable (request: IncomingMessage | WebhookRequest): request is IncomingMessage {
  return typeof (request as Partial<IncomingMessage>)[Symbol.asyncIterator] === 'function'
}

/** Headers with one string each (a repeated header joined as HTTP does), as both libraries read them. */
function flatHeaders (headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue
    out[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value
  }
  return out
}
