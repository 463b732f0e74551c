import type { FastifyPluginAsync } from 'fastify'
import { stringify } from 'yaml'
import type { AsyncApiDocument } from './asyncapi.js'
import type { RequestOrigin } from './asyncapi-servers.js'
import { catalogMarkdown, type Catalog } from './catalog.js'

/** What the catalog routes read. */
export interface CatalogSource {
  readonly catalog: () => Promise<Catalog>
  /** The AsyncAPI document, its servers named as the request named the broker. */
  readonly asyncapi: (origin: RequestOrigin) => Promise<AsyncApiDocument>
}

const MARKDOWN = ['text/markdown']
/** YAML has no single registered media type: the names tools send. */
const YAML = ['application/yaml', 'application/x-yaml', 'text/yaml', 'text/x-yaml']

/**
 * `GET /api/catalog`: every event type with its schema's fields, the publishers seen
 * and the subscribers (webhooks, MQTT filters); JSON, or Markdown when the request
 * accepts `text/markdown`. `GET /api/asyncapi`: the same as an AsyncAPI 3.0 document;
 * JSON, or YAML when the request accepts `application/yaml`.
 */
export const catalogRoutes: FastifyPluginAsync<CatalogSource> = async function catalogRoutes (app, source) {
  app.get('/api/catalog', async (req, reply) => {
    const catalog = await source.catalog()
    if (prefers(req.headers.accept, MARKDOWN)) return await reply.type('text/markdown; charset=utf-8').send(catalogMarkdown(catalog))
    return catalog
  })

  app.get('/api/asyncapi', async (req, reply) => {
    const document = await source.asyncapi({ host: req.host, protocol: req.protocol })
    // no anchors and aliases: a reader sees each part where it is
    if (prefers(req.headers.accept, YAML)) return await reply.type('application/yaml; charset=utf-8').send(stringify(document, { aliasDuplicateObjects: false }))
    return await reply.type('application/json; charset=utf-8').send(document)
  })
}

/** Whether an Accept header names one of `types` before JSON (or names no JSON). */
function prefers (accept: string | undefined, types: readonly string[]): boolean {
  if (accept === undefined) return false
  const positions = types.map((type) => accept.indexOf(type)).filter((at) => at !== -1)
  if (positions.length === 0) return false
  const json = accept.indexOf('application/json')
  return json === -1 || Math.min(...positions) < json
}
