import type { FastifyPluginAsync } from 'fastify'
import { catalogMarkdown, type Catalog } from './catalog.js'

/** What the catalog route reads. */
export interface CatalogSource {
  readonly catalog: () => Promise<Catalog>
}

/**
 * `GET /api/catalog`: every event type with its schema's fields, the publishers seen
 * and the subscribers (webhooks, MQTT filters); JSON, or Markdown when the request
 * accepts `text/markdown`.
 */
export const catalogRoutes: FastifyPluginAsync<CatalogSource> = async function catalogRoutes (app, source) {
  app.get('/api/catalog', async (req, reply) => {
    const catalog = await source.catalog()
    if (wantsMarkdown(req.headers.accept)) return await reply.type('text/markdown; charset=utf-8').send(catalogMarkdown(catalog))
    return catalog
  })
}

/** Whether an Accept header asks for Markdown before JSON. */
function wantsMarkdown (accept: string | undefined): boolean {
  if (accept === undefined) return false
  const markdown = accept.indexOf('text/markdown')
  if (markdown === -1) return false
  const json = accept.indexOf('application/json')
  return json === -1 || markdown < json
}
