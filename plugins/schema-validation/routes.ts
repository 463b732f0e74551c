import type { FastifyPluginAsync } from 'fastify'

/** One registered schema as `GET /api/schemas` lists it. */
export interface SchemaListing {
  readonly type: string
  readonly file: string
  readonly id?: string
  readonly draft: string
  readonly schema: object
}

/** `GET /api/schemas`: the registry's types, files, `$id`s and schemas. */
export const schemaRoutes: FastifyPluginAsync<{ readonly schemas: () => readonly SchemaListing[] }> = async function schemaRoutes (app, { schemas }) {
  app.get('/api/schemas', async () => ({
    schemas: [...schemas()].sort((a, b) => a.type.localeCompare(b.type))
  }))
}
