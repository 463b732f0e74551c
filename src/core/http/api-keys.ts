import { createHash, randomBytes } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { ApiKeyInput, ApiScope } from '../config/index.js'
import { ForbiddenError, UnauthorizedError } from '../errors.js'

export { ForbiddenError, UnauthorizedError } from '../errors.js'

// what an API key may do (PRODUCT §5), and a key as configured: the config's `auth.apiKeys` defines them
export type { ApiKeyInput, ApiScope }

/**
 * API keys are random, long and never typed by people, so a fast hash is safe
 * where a password needs scrypt: SHA-256 of the key, base64url, as
 * `$sha256$<hash>`. A request's key is hashed once and looked up; the configured
 * keys are never compared byte by byte.
 */
export function hashApiKey (key: string): string {
  return `$sha256$${createHash('sha256').update(key).digest('base64url')}`
}

/** A fresh key (32 random bytes, base64url) and its hash for `auth.apiKeys`. */
export function newApiKey (): { key: string, hash: string } {
  const key = `ceb_${randomBytes(32).toString('base64url')}`
  return { key, hash: hashApiKey(key) }
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The scope a route needs when its method does not say it (`GET` read, anything else admin). */
    scope?: ApiScope | 'public'
  }
}

/** The scope each route needs, by method and route pattern; `public` needs no key. */
export function scopeOf (method: string, route: string | undefined, publicMetrics: boolean): ApiScope | 'public' {
  if (route === '/healthz' || route === '/readyz' || route === '/api/mqtt/health') return 'public'
  // the dashboard's page, script and styles hold no data; what it shows comes from routes that need `read`
  if (route === '/' || route === '/dashboard/app.js' || route === '/dashboard/app.css') return 'public'
  if (route === '/metrics') return publicMetrics ? 'public' : 'read'
  if (method === 'POST' && (route === '/api/events' || route === '/api/mqtt/publish')) return 'publish'
  if (method === 'GET' || method === 'HEAD') return 'read'
  return 'admin'
}

/**
 * The `onRequest` hook guarding the API once any key is configured: a bearer key
 * (`Authorization: Bearer <key>`) with the scope the route needs, else 401 (no key,
 * unknown key, with `WWW-Authenticate: Bearer`) or 403 (the key lacks the scope).
 * Without keys the API is open, as the broker is without users.
 */
export function apiKeyGuard (keys: readonly ApiKeyInput[], publicMetrics: boolean): ((req: FastifyRequest, reply: FastifyReply) => Promise<void>) | undefined {
  if (keys.length === 0) return undefined
  const byHash = new Map(keys.map((key) => [key.key, key]))
  return async function checkApiKey (req, reply) {
    const needed = req.routeOptions.config.scope ?? scopeOf(req.method, req.routeOptions.url, publicMetrics)
    if (needed === 'public') return
    const header = req.headers.authorization
    const match = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header)
    const key = match?.[1] === undefined ? undefined : byHash.get(hashApiKey(match[1]))
    if (key === undefined) {
      void reply.header('www-authenticate', 'Bearer')
      throw new UnauthorizedError(header === undefined ? 'an API key is required: Authorization: Bearer <key>' : 'the API key is not known')
    }
    if (!key.scopes.includes(needed)) {
      throw new ForbiddenError(`API key "${key.id}" has scopes ${JSON.stringify(key.scopes)}; ${req.method} ${req.routeOptions.url ?? req.url} needs "${needed}"`)
    }
  }
}
