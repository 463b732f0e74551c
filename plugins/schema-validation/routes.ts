import type { FastifyPluginAsync, FastifyReply } from 'fastify'
import { errorBody } from '../../src/core/index.js'
import { COMPATIBILITY_LEVELS, type BreakingChange, type CompatibilityLevel } from './compatibility.js'
import type { LiveRegistry, Offered } from './live.js'
import type { SchemaEntry } from './registry.js'
import { SCHEMA_MODES, fingerprintOf, type TypeConfig } from './versions.js'

/** One type as `GET /api/schemas` lists it: its latest version and settings, and this node's shadow failures. */
export interface SchemaListing extends SchemaEntry {
  readonly shadowFailures: number
}

export interface SchemaRoutesOptions {
  /** `undefined` while no validation rule reads events (nothing is registered then). */
  readonly live: LiveRegistry | undefined
  /** Every type's latest version and settings. */
  readonly list: () => readonly SchemaListing[]
}

/** A CloudEvent type as a path segment: what maps to a topic, nothing that is a path or a filter. */
const TYPE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,254}$/

interface TypeParams { readonly type: string }
interface VersionParams extends TypeParams { readonly version: string }

/**
 * The registry's API (PRODUCT §9), shaped like Confluent's Schema Registry where it
 * fits: versions per type, a registration that answers 201, 200 for a schema
 * registered already, 409 with each breaking change, 400 for what is no JSON Schema;
 * a dry run; per-type compatibility and mode. `GET` needs the `read` scope, the rest `admin`.
 */
export const schemaRoutes: FastifyPluginAsync<SchemaRoutesOptions> = async function schemaRoutes (app, { live, list }) {
  // the shared definitions too: what a type's `$ref`s reach, for tools that read the registry (`ce-broker types`)
  app.get('/api/schemas', async () => ({ schemas: list(), definitions: live?.registry.definitions() ?? [] }))

  app.get<{ Params: TypeParams }>('/api/schemas/:type/versions', async (req, reply) => {
    const registry = live?.registry
    const history = registry?.history(req.params.type) ?? []
    if (registry === undefined || history.length === 0) return await noType(reply, req.params.type)
    return {
      type: req.params.type,
      ...registry.config(req.params.type),
      versions: history.map((v) => ({ version: v.version, registeredAt: v.registeredAt, fingerprint: fingerprintOf(v.schema), ...(v.file === undefined ? {} : { file: v.file }), ...(v.id === undefined ? {} : { id: v.id }) }))
    }
  })

  app.get<{ Params: VersionParams }>('/api/schemas/:type/versions/:version', async (req, reply) => {
    const { type, version } = req.params
    const registry = live?.registry
    const found = version === 'latest' ? registry?.latest(type) : /^[1-9][0-9]{0,8}$/.test(version) ? registry?.version(type, Number(version)) : undefined
    if (found === undefined) return await reply.code(404).send(errorBody('not_found', `no version ${JSON.stringify(version)} of type ${JSON.stringify(type)}`))
    const { validate: _validate, ...shown } = found
    return shown
  })

  app.get<{ Params: TypeParams }>('/api/schemas/:type/config', async (req) => ({ type: req.params.type, ...(live?.registry.config(req.params.type) ?? {}) }))

  app.post<{ Params: TypeParams, Body: unknown }>('/api/schemas/:type/versions', async (req, reply) => {
    const given = offeredTo(live, req.params.type, req.body, reply)
    if (given === undefined) return reply
    const { registry, offered } = given
    const registered = await registry.register(req.params.type, offered)
    if (registered.outcome === 'incompatible') return await incompatible(reply, req.params.type, registered.errors, registry.registry.config(req.params.type).compatibility)
    return await reply.code(registered.outcome === 'created' ? 201 : 200).send({ type: req.params.type, version: registered.version.version })
  })

  app.post<{ Params: TypeParams, Body: unknown }>('/api/schemas/:type/compatibility', async (req, reply) => {
    const given = offeredTo(live, req.params.type, req.body, reply)
    if (given === undefined) return reply
    const { registry, offered } = given
    const errors = await registry.compatibility(req.params.type, offered)
    return { compatible: errors.length === 0, compatibility: registry.registry.config(req.params.type).compatibility, errors }
  })

  app.put<{ Params: TypeParams, Body: unknown }>('/api/schemas/:type/config', async (req, reply) => {
    const registry = usable(live, req.params.type, reply)
    if (registry === undefined) return reply
    const config = configOf(req.body)
    if (typeof config === 'string') return await reply.code(400).send(errorBody('bad_request', config))
    return { type: req.params.type, ...await registry.configure(req.params.type, config) }
  })
}

/** The registry, when a change to `type` can be made; else the answer is sent. */
function usable (live: LiveRegistry | undefined, type: string, reply: FastifyReply): LiveRegistry | undefined {
  if (!TYPE.test(type)) {
    void reply.code(400).send(errorBody('bad_request', `${JSON.stringify(type)} is not a CloudEvent type (letters, digits, ".", "_", ":", "-")`))
    return undefined
  }
  if (live === undefined) void reply.code(409).send(errorBody('registry_off', 'no validation rule reads events (validation.rules is empty): nothing is registered'))
  return live
}

/** The registry and a schema offered to `type` as it took it; else the 400 (or the refusal of `usable`) is sent. */
function offeredTo (live: LiveRegistry | undefined, type: string, body: unknown, reply: FastifyReply): { registry: LiveRegistry, offered: Extract<Offered, { ok: true }> } | undefined {
  const registry = usable(live, type, reply)
  if (registry === undefined) return undefined
  const offered = registry.offer(type, body)
  if (offered.ok) return { registry, offered }
  void reply.code(400).send(errorBody('invalid_schema', offered.problem))
  return undefined
}

async function noType (reply: FastifyReply, type: string): Promise<FastifyReply> {
  return await reply.code(404).send(errorBody('not_found', `no schema is registered for type ${JSON.stringify(type)}`))
}

async function incompatible (reply: FastifyReply, type: string, errors: readonly BreakingChange[], rule: CompatibilityLevel): Promise<FastifyReply> {
  const message = `the schema is not ${rule} compatible with the registered versions of "${type}": ${errors.length} breaking change${errors.length === 1 ? '' : 's'}`
  return await reply.code(409).send({ error: { code: 'incompatible_schema', message, errors } })
}

/** `{ compatibility?, mode? }`, or what is wrong with it. */
function configOf (body: unknown): TypeConfig | string {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return 'the body must be an object: { "compatibility"?, "mode"? }'
  const unknown = Object.keys(body).filter((key) => key !== 'compatibility' && key !== 'mode')
  if (unknown.length > 0) return `unknown field ${JSON.stringify(unknown[0])}: only "compatibility" and "mode"`
  const compatibility: unknown = Reflect.get(body, 'compatibility')
  const mode: unknown = Reflect.get(body, 'mode')
  if (compatibility !== undefined && !oneOf(COMPATIBILITY_LEVELS, compatibility)) return `compatibility must be one of ${COMPATIBILITY_LEVELS.join(', ')}, got ${JSON.stringify(compatibility)}`
  if (mode !== undefined && !oneOf(SCHEMA_MODES, mode)) return `mode must be one of ${SCHEMA_MODES.join(', ')}, got ${JSON.stringify(mode)}`
  return { ...(compatibility === undefined ? {} : { compatibility }), ...(mode === undefined ? {} : { mode }) }
}

function oneOf<T extends string> (values: readonly T[], value: unknown): value is T {
  return values.some((v) => v === value)
}
