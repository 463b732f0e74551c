import type { FastifyPluginAsync } from 'fastify'
import type { Registry } from 'prom-client'

/** `GET /metrics`: Prometheus text from this broker's own registry. */
export const metricsRoutes: FastifyPluginAsync<{ readonly metrics: Registry }> = async function metricsRoutes (app, { metrics }) {
  app.get('/metrics', async (_req, reply) => {
    return await reply.type(metrics.contentType).send(await metrics.metrics())
  })
}
