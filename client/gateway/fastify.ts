import type { FastifyInstance, FastifyPluginAsync, FastifyReply } from 'fastify'
import { EVENTS_HEADER, isJsonType, readBodyObject, readBodyText, readHeader, type Problem } from './extract.js'
import { Relay, type GatewayEvents, type GatewayOptions } from './relay.js'

export type GatewayInterceptorOptions = GatewayOptions

declare module 'fastify' {
  interface FastifyInstance {
    /** The gateway interceptor's counters (`stats()`) and `settled()`, when `gatewayInterceptor` is registered. */
    gatewayEvents: GatewayEvents
  }
}

/**
 * The gateway interceptor as a fastify plugin: the events a route's response carries (its
 * `X-CloudEvents` header, its body's `events` beside `data`) are taken out of the
 * response and published alongside it. The body is read where fastify still holds it
 * whole: an object in `preSerialization` (before a response schema could drop `events`),
 * a JSON string or Buffer in `onSend`. A streamed body is sent on as it is; its header
 * is still read.
 */
async function gatewayInterceptorPlugin (app: FastifyInstance, options: GatewayInterceptorOptions): Promise<void> {
  const relay = new Relay(options, app.log)
  /** Entries read from a body object before serialization, published with the header's in onSend. */
  const fromBody = new WeakMap<FastifyReply, { entries: readonly unknown[] }>()

  app.decorate('gatewayEvents', { stats: relay.stats, settled: relay.settled })

  if (relay.body) {
    app.addHook('preSerialization', async function takeBodyEvents (_request, reply, payload: unknown) {
      const found = readBodyObject(payload)
      if (found === undefined) return payload
      fromBody.set(reply, found)
      return found.body
    })
  }

  app.addHook('onSend', async function publishResponseEvents (_request, reply, payload: unknown) {
    const header = reply.getHeader(EVENTS_HEADER) ?? reply.raw.getHeader(EVENTS_HEADER)
    const taken = fromBody.get(reply)
    let body = payload
    let entries: readonly unknown[] = []
    const problems: Problem[] = []
    if (header !== undefined) {
      reply.removeHeader(EVENTS_HEADER)
      reply.raw.removeHeader(EVENTS_HEADER)
      const read = readHeader(header, relay.limits)
      entries = read.entries
      problems.push(...read.problems)
    }
    if (taken !== undefined) {
      fromBody.delete(reply)
      entries = [...entries, ...taken.entries]
    } else if (relay.body && (typeof payload === 'string' || Buffer.isBuffer(payload)) && isJsonType(reply.getHeader('content-type'))) {
      const { found, problem } = readBodyText(payload, relay.limits)
      if (problem !== undefined) problems.push(problem)
      if (found !== undefined) {
        entries = [...entries, ...found.entries]
        // fastify sets Content-Length from the payload it is given back
        body = found.body
      }
    }
    // published now, inside the request's async context (its span becomes the events'
    // traceparent), and not awaited: the response goes out without waiting for the broker
    if (entries.length > 0 || problems.length > 0) relay.take(entries, problems)
    return body
  })

  // app.close() waits for the publishes under way and their fallbacks
  app.addHook('onClose', async function settleGatewayEvents () { await relay.settled() })
}

/**
 * `app.register(gatewayInterceptor, { publisher, fallback, ... })`. Its hooks apply to the
 * routes of the instance it is registered on, like a plugin wrapped by `fastify-plugin`:
 * fastify skips the encapsulation of a plugin marked `Symbol.for('skip-override')`,
 * which is what `fastify-plugin` sets, with the plugin's name and the fastify version it
 * needs (`plugin-meta`, checked by fastify at register). So that package is not needed.
 */
export const gatewayInterceptor: FastifyPluginAsync<GatewayInterceptorOptions> = Object.assign(gatewayInterceptorPlugin, {
  [Symbol.for('skip-override')]: true,
  [Symbol.for('fastify.display-name')]: 'ce-broker-gateway-interceptor',
  [Symbol.for('plugin-meta')]: { name: 'ce-broker-gateway-interceptor', fastify: '5.x' }
})
