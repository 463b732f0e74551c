/**
 * `ce-broker schemas check --against <dir | broker URL> <dir>`: a publisher's CI step.
 * Compares a folder of schemas with the registered ones under each type's compatibility
 * rule, prints each breaking change with its path, and exits 1 when one is found, 0
 * otherwise, 2 on bad input (a folder or schema that cannot be read, a broker that does
 * not answer).
 */
import { parseArgs } from 'node:util'
import { COMPATIBILITY_LEVELS, checkCompatibility, type BreakingChange, type CompatibilityLevel } from '../plugins/schema-validation/compatibility.js'
import { readSchemaFolder, splitDocuments, type TypeFile } from '../plugins/schema-validation/folder.js'
import { SchemaRegistry } from '../plugins/schema-validation/registry.js'
import { fingerprintOf } from '../plugins/schema-validation/versions.js'
import type { AnySchemaObject } from 'ajv'

/** What one type's registered side holds: its versions' schemas, oldest first, and its rule. */
interface Registered {
  readonly schemas: readonly AnySchemaObject[]
  readonly compatibility: CompatibilityLevel
  /** Every registered version's fingerprint: a file that is one of them is that version, nothing new. */
  readonly fingerprints: ReadonlySet<string>
}

/** The input was unusable: exit 2 with this message. */
class BadInput extends Error {}

export const SCHEMAS_CHECK_USAGE = [
  'Usage: ce-broker schemas check --against <dir | broker URL> [--compatibility LEVEL] [--api-key KEY] <dir>',
  '',
  'Checks every schema of <dir> against the versions registered for its type: the files of',
  'another folder, or a running broker\'s registry (GET /api/schemas; API key from --api-key',
  'or CE_BROKER_API_KEY). Each type is checked under its own compatibility rule (a folder:',
  '--compatibility, default BACKWARD). Prints each breaking change with its path.',
  'Exit status: 0 compatible, 1 a breaking change, 2 bad input.'
].join('\n')

/** Run the check; returns the exit status. */
export async function runSchemasCheck (argv: readonly string[], out: (line: string) => void, err: (line: string) => void, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  try {
    const { values, positionals } = parseArgs({
      args: [...argv],
      options: { against: { type: 'string' }, compatibility: { type: 'string' }, 'api-key': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true
    })
    if (values.help === true) {
      out(SCHEMAS_CHECK_USAGE)
      return 0
    }
    const dir = positionals[0]
    if (values.against === undefined || dir === undefined || positionals.length > 1) throw new BadInput(`give --against and one folder\n\n${SCHEMAS_CHECK_USAGE}`)
    const override = values.compatibility === undefined ? undefined : levelOf(values.compatibility)
    const candidates = await readFolder(dir)
    const registered = /^https?:\/\//.test(values.against)
      ? await fromBroker(values.against, values['api-key'] ?? env.CE_BROKER_API_KEY, override)
      : fromFolder(await readFolder(values.against), override ?? 'BACKWARD')
    return report(candidates, registered, out)
  } catch (e: unknown) {
    err(`ce-broker schemas check: ${e instanceof Error ? e.message : String(e)}`)
    return 2
  }
}

/** A folder's types, compiled (a schema that does not compile is bad input), with the resolver of its shared definitions. */
async function readFolder (dir: string): Promise<{ types: TypeFile[], registry: SchemaRegistry }> {
  let registry: SchemaRegistry
  let types: TypeFile[]
  try {
    const documents = await readSchemaFolder(dir)
    types = splitDocuments(documents).types
    registry = SchemaRegistry.compile(documents)
  } catch (e: unknown) {
    throw new BadInput(e instanceof Error ? e.message : String(e))
  }
  return { types, registry }
}

function fromFolder (folder: { types: TypeFile[] }, compatibility: CompatibilityLevel): Map<string, Registered> {
  return new Map(folder.types.map(({ type, schema }) => [type, { schemas: [schema], compatibility, fingerprints: new Set([fingerprintOf(schema)]) }]))
}

/** The registry of a running broker: each type's rule, and its versions (all of them for a transitive rule). */
async function fromBroker (url: string, apiKey: string | undefined, override: CompatibilityLevel | undefined): Promise<Map<string, Registered>> {
  const base = url.replace(/\/+$/, '')
  const get = async (path: string): Promise<unknown> => {
    let response: Response
    try {
      response = await fetch(`${base}${path}`, { headers: apiKey === undefined ? {} : { authorization: `Bearer ${apiKey}` } })
    } catch (e: unknown) {
      throw new BadInput(`${base}${path} did not answer: ${e instanceof Error ? e.message : String(e)}`)
    }
    if (!response.ok) throw new BadInput(`${base}${path} answered ${response.status}: ${(await response.text()).slice(0, 200)}`)
    return await response.json()
  }
  const listing = await get('/api/schemas') as { schemas?: Array<{ type: string, schema: AnySchemaObject, compatibility?: string }> }
  if (!Array.isArray(listing.schemas)) throw new BadInput(`${base}/api/schemas is not a ce-broker registry`)
  const out = new Map<string, Registered>()
  for (const entry of listing.schemas) {
    const compatibility = override ?? levelOf(entry.compatibility ?? 'BACKWARD')
    const path = `/api/schemas/${encodeURIComponent(entry.type)}/versions`
    const { versions } = await get(path) as { versions: Array<{ version: number, fingerprint?: string }> }
    const fingerprints = new Set(versions.flatMap((v) => v.fingerprint === undefined ? [] : [v.fingerprint]))
    if (!compatibility.endsWith('_TRANSITIVE')) {
      out.set(entry.type, { schemas: [entry.schema], compatibility, fingerprints: fingerprints.add(fingerprintOf(entry.schema)) })
      continue
    }
    const schemas: AnySchemaObject[] = []
    for (const { version } of versions) schemas.push((await get(`${path}/${version}`) as { schema: AnySchemaObject }).schema)
    out.set(entry.type, { schemas, compatibility, fingerprints: new Set([...fingerprints, ...schemas.map(fingerprintOf)]) })
  }
  return out
}

/** Print the verdict per type; 1 when a change breaks a rule. */
function report (candidates: { types: TypeFile[], registry: SchemaRegistry }, registered: ReadonlyMap<string, Registered>, out: (line: string) => void): number {
  const resolve = candidates.registry.resolver()
  let breaking = 0
  let failedTypes = 0
  let fresh = 0
  for (const { type, file, schema } of candidates.types) {
    const known = registered.get(type)
    if (known === undefined) {
      fresh++
      out(`${type} (${file}): new type`)
      continue
    }
    const fingerprint = fingerprintOf(schema)
    if (known.fingerprints.has(fingerprint)) {
      out(`${type} (${file}): a registered version`)
      continue
    }
    const errors: readonly BreakingChange[] = checkCompatibility(known.schemas, schema, known.compatibility, resolve)
    if (errors.length === 0) {
      out(`${type} (${file}): ${known.compatibility} compatible`)
      continue
    }
    failedTypes++
    breaking += errors.length
    out(`${type} (${file}): not ${known.compatibility} compatible`)
    for (const e of errors) out(`  ${e.path === '' ? '/' : e.path}: ${e.message}`)
  }
  const checked = candidates.types.length
  out(`${checked} type${checked === 1 ? '' : 's'} checked, ${fresh} new; ${breaking === 0 ? 'no breaking change' : `${breaking} breaking change${breaking === 1 ? '' : 's'} in ${failedTypes} type${failedTypes === 1 ? '' : 's'}`}`)
  return breaking === 0 ? 0 : 1
}

function levelOf (value: string): CompatibilityLevel {
  const level = COMPATIBILITY_LEVELS.find((l) => l === value)
  if (level === undefined) throw new BadInput(`--compatibility must be one of ${COMPATIBILITY_LEVELS.join(', ')}, got ${JSON.stringify(value)}`)
  return level
}
