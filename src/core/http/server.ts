import { createServer as createHttpServer, type Server } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { LogController, fastify, type FastifyPluginAsync } from 'fastify'
import type { Logger } from '../logger.js'
import { apiKeyGuard, type ApiKeyInput } from './api-keys.js'
import { makeErrorHandler, notFound } from './errors.js'
import { healthRoutes, type HealthSource } from './routes/health.js'
import { metricsRoutes } from './routes/metrics.js'
import { retainedRoutes, type RetainedSource } from './routes/retained.js'
import { ingressRoutes, type IngressSource } from './routes/publish.js'
import { dashboardRoutes } from './routes/dashboard.js'
import type { Registry } from 'prom-client'

/** What the HTTP API reads from the broker. */
export interface HttpDeps extends HealthSource, RetainedSource, IngressSource {
  readonly log: Logger
  readonly metrics: Registry
  /** The built dashboard's folder; `undefined` when it is not built. */
  readonly dashboardDir: string | undefined
  /** The plugins' routes, registered after the core's (each plugin's in a context of its own). */
  readonly pluginRoutes: ReadonlyArray<{ readonly plugin: string, readonly routes: FastifyPluginAsync }>
}

export interface HttpOptions {
  /** PEM key and certificate: HTTPS (and WSS) instead of HTTP (and WS). */
  readonly tls?: { readonly key: Buffer, readonly cert: Buffer }
  /** Largest request body in bytes. */
  readonly bodyLimit: number
  /** Bearer API keys; once there is one, every route but the health probes (and `/metrics` when public) needs one with the route's scope. */
  readonly apiKeys: readonly ApiKeyInput[]
  readonly publicMetrics: boolean
  /** `http.trustProxy`: proxies whose `X-Forwarded-For` gives `request.ip`. */
  readonly trustProxy?: string
}

/**
 * The HTTP side of the broker: API routes on fastify, over a node server we
 * create ourselves so that the WebSocket upgrade handler can share it.
 */
/** The HTTP API, ready to listen on `server`. */
export interface HttpApi {
  readonly server: Server
  /** Close fastify and the server, dropping keep-alive connections. */
  readonly close: () => Promise<void>
}

export async function createHttpApi (deps: HttpDeps, options: HttpOptions): Promise<HttpApi> {
  // https.Server is no http.Server in node's types, but serves the same 'request'
  // and 'upgrade' events; fastify and ws only use those.
  const server: Server = options.tls === undefined
    ? createHttpServer()
    : createHttpsServer({ key: options.tls.key, cert: options.tls.cert }) as unknown as Server
  const app = fastify({
    loggerInstance: deps.log,
    // per-request lines would be mostly health probes and scrapes; errors are logged by the error handler
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: options.bodyLimit,
    ...(options.trustProxy === undefined ? {} : { trustProxy: options.trustProxy }),
    serverFactory: (handler) => server.on('request', handler)
  })
  app.setErrorHandler(makeErrorHandler(deps.log))
  app.setNotFoundHandler(notFound)
  const guard = apiKeyGuard(options.apiKeys, options.publicMetrics)
  if (guard !== undefined) app.addHook('onRequest', guard)
  await app.register(healthRoutes, deps)
  await app.register(metricsRoutes, deps)
  await app.register(retainedRoutes, deps)
  await app.register(ingressRoutes, deps)
  for (const { routes } of deps.pluginRoutes) await app.register(routes)
  await app.register(dashboardRoutes, { dir: deps.dashboardDir })
  await app.ready()
  return {
    server,
    close: async () => {
      await app.close()
      // fastify closes only servers it started listening itself; this one we listen on in broker.ts
      if (!server.listening) return
      await new Promise<void>((resolve) => {
        server.close(() => { resolve() })
        server.closeAllConnections()
      })
    }
  }
}
