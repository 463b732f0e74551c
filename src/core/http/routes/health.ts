import type { FastifyPluginAsync } from 'fastify'

/** What the health routes report. */
export interface HealthSource {
  readonly nodeId: string
  readonly version: string
  readonly startedAt: Date
  /** Each readiness check by name: listeners, and Redis when configured. */
  readonly readiness: () => Readonly<Record<string, boolean>>
  readonly connectedClients: () => number
  readonly persistence: 'memory' | 'redis'
}

/** `/healthz` (liveness), `/readyz` (readiness) and `/api/mqtt/health` (a status summary). All public. */
export const healthRoutes: FastifyPluginAsync<HealthSource> = async function healthRoutes (app, source) {
  app.get('/healthz', async () => ({ status: 'ok' }))

  app.get('/readyz', async (_req, reply) => {
    const checks = source.readiness()
    const ready = Object.values(checks).every(Boolean)
    return await reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not_ready', checks })
  })

  app.get('/api/mqtt/health', async () => {
    const checks = source.readiness()
    return {
      status: Object.values(checks).every(Boolean) ? 'ok' : 'degraded',
      nodeId: source.nodeId,
      version: source.version,
      uptimeSeconds: Math.round((Date.now() - source.startedAt.getTime()) / 1000),
      connectedClients: source.connectedClients(),
      persistence: source.persistence,
      checks
    }
  })
}
