/**
 * `ce-broker types --out events.ts [--from <dir | broker URL>]`: each registered
 * CloudEvent type's `data` as a TypeScript type, generated from its latest JSON Schema
 * with json-schema-to-typescript, and `interface Events` mapping each type to it, for
 * `createPublisher<Events>()` and `createWebhookHandler<Events>()` of `ce-broker/client`.
 * A `.ts` file also exports `dataschemas`, each type's `dataschema`. Exit 0 written, 2 bad input.
 */
import { writeFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { compile, type JSONSchema } from 'json-schema-to-typescript'
import { readSchemaFolder, splitDocuments } from '../plugins/schema-validation/folder.js'

export const TYPES_USAGE = [
  'Usage: ce-broker types --out <file.ts | file.d.ts> [--from <dir | broker URL>] [--api-key KEY]',
  '',
  'Writes the data type of every CloudEvent type of a schema folder (default ./schemas) or of a',
  'running broker\'s registry (its latest versions: GET /api/schemas; API key from --api-key or',
  'CE_BROKER_API_KEY), and `interface Events` from each type to its data type. A .ts file also',
  'exports `dataschemas`: each type\'s dataschema (the registry\'s version URL from a broker, the',
  'schema\'s $id from a folder when absolute), for createPublisher({ dataschemas }).',
  'Exit status: 0 written, 2 bad input.'
].join('\n')

/** One type to generate: its schema as registered, and the dataschema that names this version. */
interface TypeSource {
  readonly type: string
  readonly schema: JsonObject
  readonly dataschema: string | undefined
}

type JsonObject = Record<string, unknown>

/** Where documents without an `$id` sit, so that relative `$ref`s between files still resolve. */
const LOCAL_BASE = 'https://ce-broker.invalid/schemas/'

class BadInput extends Error {}

/** Run the command; returns the exit status. */
export async function runTypes (argv: readonly string[], out: (line: string) => void, err: (line: string) => void, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  try {
    const { values, positionals } = parseArgs({
      args: [...argv],
      options: { out: { type: 'string' }, from: { type: 'string' }, 'api-key': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: false,
      strict: true
    })
    if (values.help === true) {
      out(TYPES_USAGE)
      return 0
    }
    if (values.out === undefined || positionals.length > 0) throw new BadInput(`give --out\n\n${TYPES_USAGE}`)
    const from = values.from ?? 'schemas'
    const { types, documents } = /^https?:\/\//.test(from)
      ? await fromBroker(from, values['api-key'] ?? env.CE_BROKER_API_KEY)
      : await fromFolder(from)
    const text = await generate(types, documents, from, !values.out.endsWith('.d.ts'))
    await writeFile(values.out, text)
    out(`${types.length} type${types.length === 1 ? '' : 's'} written to ${values.out}`)
    return 0
  } catch (e: unknown) {
    err(`ce-broker types: ${e instanceof Error ? e.message : String(e)}`)
    return 2
  }
}

/** A folder as the broker reads it: shared definitions (`_*.json`) and one file per type. */
async function fromFolder (dir: string): Promise<{ types: TypeSource[], documents: Map<string, JsonObject> }> {
  let split: ReturnType<typeof splitDocuments>
  try {
    split = splitDocuments(await readSchemaFolder(dir))
  } catch (e: unknown) {
    throw new BadInput(e instanceof Error ? e.message : String(e))
  }
  const documents = new Map(split.definitions.map(({ file, schema }) => [baseOf(schema, file), schema]))
  const types = split.types.map(({ type, file, schema }) => {
    documents.set(baseOf(schema, file), schema)
    // a relative `$id` is no dataschema: the broker refuses an event naming one (it must be an absolute URI)
    return { type, schema, dataschema: typeof schema.$id === 'string' && URL.canParse(schema.$id) ? schema.$id : undefined }
  })
  return { types, documents }
}

/** A running broker's registry: each type's latest version, named by its version URL, and the shared definitions. */
async function fromBroker (url: string, apiKey: string | undefined): Promise<{ types: TypeSource[], documents: Map<string, JsonObject> }> {
  const base = url.replace(/\/+$/, '')
  let response: Response
  try {
    response = await fetch(`${base}/api/schemas`, { headers: apiKey === undefined ? {} : { authorization: `Bearer ${apiKey}` } })
  } catch (e: unknown) {
    throw new BadInput(`${base}/api/schemas did not answer: ${e instanceof Error ? e.message : String(e)}`)
  }
  if (!response.ok) throw new BadInput(`${base}/api/schemas answered ${response.status}: ${(await response.text()).slice(0, 200)}`)
  const listing: unknown = await response.json()
  const schemas = isObject(listing) && Array.isArray(listing.schemas) ? listing.schemas.filter(isObject) : undefined
  if (schemas === undefined) throw new BadInput(`${base}/api/schemas is not a ce-broker registry`)
  const definitions = isObject(listing) && Array.isArray(listing.definitions) ? listing.definitions.filter(isObject) : []
  const documents = new Map<string, JsonObject>()
  for (const { file, schema } of definitions) if (typeof file === 'string' && isObject(schema)) documents.set(baseOf(schema, file), schema)
  const types: TypeSource[] = []
  for (const { type, schema, version, file } of schemas) {
    if (typeof type !== 'string' || !isObject(schema) || typeof version !== 'number') throw new BadInput(`${base}/api/schemas lists an entry without type, schema and version`)
    documents.set(baseOf(schema, typeof file === 'string' ? file : `${type}.json`), schema)
    types.push({ type, schema, dataschema: `${base}/api/schemas/${encodeURIComponent(type)}/versions/${version}` })
  }
  return { types, documents }
}

/**
 * One compile of a schema holding every type under `$defs`, named by its type, with
 * `Events` as its root: types shared by several schemas are declared once. Each type's
 * `$ref`s are made absolute first (against its `$id`), and read from `documents` by
 * their URL, never fetched.
 */
async function generate (types: readonly TypeSource[], documents: ReadonlyMap<string, JsonObject>, from: string, values: boolean): Promise<string> {
  const names = typeNames(types.map((t) => t.type))
  const defs: Record<string, JSONSchema> = {}
  const properties: Record<string, JSONSchema> = {}
  for (const { type, schema } of types) {
    const name = names.get(type) ?? type
    const { $id: _id, $schema: _schema, title, description, ...rest } = absoluteRefs(schema, baseOf(schema, `${type}.json`), `#/$defs/${name}`)
    const said = [title, description].filter((s): s is string => typeof s === 'string').join('\n\n')
    defs[name] = { ...rest, title: name, ...(said === '' ? {} : { description: said }) }
    properties[type] = { $ref: `#/$defs/${name}` }
  }
  const root: JSONSchema = {
    title: 'Events',
    description: 'Each CloudEvent type\'s `data`: `createPublisher<Events>()`, `createWebhookHandler<Events>()`.',
    type: 'object',
    properties,
    required: types.map((t) => t.type),
    additionalProperties: false,
    $defs: defs
  }
  const code = await compile(root, 'Events', {
    bannerComment: '',
    format: true,
    unreachableDefinitions: false,
    $refOptions: {
      resolve: {
        file: false,
        http: false,
        registry: {
          order: 1,
          canRead: /^https?:/,
          read: (file: { url: string }) => {
            const document = documents.get(file.url.split('#')[0] ?? '')
            if (document === undefined) throw new BadInput(`a $ref names ${file.url}, which is neither a type nor a shared definition of ${from}`)
            return JSON.stringify(document)
          }
        }
      }
    }
  })
  const header = `/**\n * Generated by \`ce-broker types\` from ${from}. Do not edit: run it again.\n */\n`
  if (!values) return `${header}${code}`
  const schemas = Object.fromEntries(types.flatMap((t) => t.dataschema === undefined ? [] : [[t.type, t.dataschema]]))
  return `${header}${code}\n/** Each type's \`dataschema\`, for \`createPublisher({ dataschemas })\`. */\nexport const dataschemas: Readonly<Partial<Record<keyof Events, string>>> = ${JSON.stringify(schemas, null, 2)}\n`
}

/** `albergue.v1.booking.reserved` → `AlbergueV1BookingReserved`; two types with one name get a number. */
function typeNames (types: readonly string[]): Map<string, string> {
  const taken = new Set<string>(['Events'])
  const names = new Map<string, string>()
  for (const type of types) {
    const stem = type.split(/[^A-Za-z0-9]+/).filter((w) => w !== '').map((w) => w[0]?.toUpperCase() + w.slice(1)).join('')
    const base = /^[A-Za-z]/.test(stem) ? stem : `Event${stem}`
    let name = base
    for (let n = 2; taken.has(name); n++) name = `${base}${n}`
    taken.add(name)
    names.set(type, name)
  }
  return names
}

/** A document's URL: its `$id`, else its file name under a base of its own. */
function baseOf (schema: JsonObject, file: string): string {
  const fallback = new URL(file.split('/').pop() ?? file, LOCAL_BASE).href
  return typeof schema.$id === 'string' ? new URL(schema.$id, fallback).href : fallback
}

/**
 * The schema with every `$ref` absolute (against the `$id`s around it), except the ones
 * into the schema itself, which now point under `local` (where it is placed in the root).
 */
function absoluteRefs (node: JsonObject, base: string, local: string): JsonObject {
  const walk = (value: unknown, here: string): unknown => {
    if (Array.isArray(value)) return value.map((v) => walk(v, here))
    if (!isObject(value)) return value
    const inner = typeof value.$id === 'string' && value !== node ? new URL(value.$id, here).href : here
    const out: JsonObject = {}
    for (const [key, v] of Object.entries(value)) {
      if (key === '$ref' && typeof v === 'string') {
        const target = new URL(v, inner).href
        out[key] = target.startsWith(`${base}#`) || target === base ? `${local}${target.slice(base.length + 1)}` : target
      } else {
        out[key] = walk(v, inner)
      }
    }
    return out
  }
  const walked = walk(node, base)
  return isObject(walked) ? walked : node
}

function isObject (value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}
