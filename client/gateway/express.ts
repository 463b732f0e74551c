import type { IncomingMessage, OutgoingHttpHeader, OutgoingHttpHeaders, ServerResponse } from 'node:http'
import { EVENTS_HEADER, isJsonType, readBodyObject, readBodyText, readHeader, type HeaderValue, type Problem } from './extract.js'
import { Relay, type GatewayEvents, type GatewayOptions } from './relay.js'

export type GatewayMiddlewareOptions = GatewayOptions

/** What the middleware uses of express's response, beyond Node's: `res.json` and `res.send`. */
export type GatewayResponse = ServerResponse & {
  json?: (body?: unknown) => unknown
  send?: (body?: unknown) => unknown
}

/** An express middleware (assignable to express's `RequestHandler`) with the interceptor's counters. */
export interface GatewayMiddleware extends GatewayEvents {
  (req: IncomingMessage, res: GatewayResponse, next: (err?: unknown) => void): void
}

/**
 * The gateway interceptor as an express middleware: `app.use(gatewayMiddleware({ publisher }))`
 * before the routes (or the proxy) whose responses carry events. It takes the
 * `X-CloudEvents` header out when the response head is written (`writeHead`, which
 * every way of answering goes through), and the body's `events` beside `data` from
 * `res.json(object)`, `res.send(object)` and `res.send` of a JSON string or Buffer.
 * A body written with `res.write`/`res.end` (a piped proxy, a stream, `res.sendFile`)
 * is sent on as it is; its header is still read.
 */
export function gatewayMiddleware (options: GatewayMiddlewareOptions): GatewayMiddleware {
  const relay = new Relay(options)
  function interceptGatewayEvents (_req: IncomingMessage, res: GatewayResponse, next: (err?: unknown) => void): void {
    intercept(res, relay)
    next()
  }
  return Object.assign(interceptGatewayEvents, { stats: relay.stats, settled: relay.settled })
}

function intercept (res: GatewayResponse, relay: Relay): void {
  let entries: readonly unknown[] = []
  const problems: Problem[] = []
  /** Set once `res.json` has handled the body: its `res.send` of the serialized text is left alone. */
  let bodyRead = false

  // published at most once per response, as soon as both the head and the body are known
  function flush (): void {
    if (entries.length === 0 && problems.length === 0) return
    const taken = entries
    entries = []
    relay.take(taken, problems.splice(0))
  }

  const writeHead = res.writeHead
  res.writeHead = function writeHeadWithoutEvents (this: ServerResponse, ...args: unknown[]): ServerResponse {
    const header = this.getHeader(EVENTS_HEADER) ?? headerIn(args)
    if (header !== undefined) {
      this.removeHeader(EVENTS_HEADER)
      removeFrom(args)
      const read = readHeader(header, relay.limits)
      entries = [...read.entries, ...entries]
      problems.push(...read.problems)
    }
    // the head goes first, the events right after it: nothing waits for the broker
    const written = Reflect.apply(writeHead, this, args) as ServerResponse
    flush()
    return written
  } as ServerResponse['writeHead']

  if (!relay.body) return

  const { json, send } = res
  if (json !== undefined) {
    res.json = function jsonWithoutEvents (this: GatewayResponse, body?: unknown): unknown {
      const found = readBodyObject(body)
      if (found !== undefined) entries = [...entries, ...found.entries]
      bodyRead = true
      try {
        return json.call(this, found === undefined ? body : found.body)
      } finally {
        flush()
      }
    }
  }
  if (send !== undefined) {
    res.send = function sendWithoutEvents (this: GatewayResponse, body?: unknown): unknown {
      if (bodyRead || !(typeof body === 'string' || Buffer.isBuffer(body)) || !isJsonType(this.getHeader('content-type'))) return send.call(this, body)
      bodyRead = true
      const { found, problem } = readBodyText(body, relay.limits)
      if (problem !== undefined) problems.push(problem)
      if (found !== undefined) entries = [...entries, ...found.entries]
      try {
        // express sets Content-Length from the body it is given
        return send.call(this, found === undefined ? body : found.body)
      } finally {
        flush()
      }
    }
  }
}

/** The `X-CloudEvents` value among `writeHead(status[, message][, headers])`'s headers (an object or a flat [name, value, ...] list). */
function headerIn (args: readonly unknown[]): HeaderValue {
  const headers = args.at(-1)
  if (Array.isArray(headers)) {
    for (let i = 0; i + 1 < headers.length; i += 2) {
      if (String(headers[i]).toLowerCase() === EVENTS_HEADER) return headers[i + 1] as OutgoingHttpHeader
    }
    return undefined
  }
  if (typeof headers !== 'object' || headers === null) return undefined
  for (const [name, value] of Object.entries(headers as OutgoingHttpHeaders)) {
    if (name.toLowerCase() === EVENTS_HEADER) return value
  }
  return undefined
}

/** `args` with the headers argument rebuilt without `X-CloudEvents`. */
function removeFrom (args: unknown[]): void {
  const at = args.length - 1
  const headers = args[at]
  if (Array.isArray(headers)) {
    const kept: unknown[] = []
    for (let i = 0; i + 1 < headers.length; i += 2) {
      if (String(headers[i]).toLowerCase() !== EVENTS_HEADER) kept.push(headers[i], headers[i + 1])
    }
    args[at] = kept
  } else if (typeof headers === 'object' && headers !== null) {
    args[at] = Object.fromEntries(Object.entries(headers).filter(([name]) => name.toLowerCase() !== EVENTS_HEADER))
  }
}
