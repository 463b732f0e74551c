import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { deadLetter } from '../plugins/dead-letter/index.js'
import { SchemaRegistry, schemaValidation } from '../plugins/schema-validation/index.js'
import type { BrokerConfig } from './config.js'
import type { PluginEntry } from './context.js'
import type { Logger } from './logger.js'
import type { DeadLetterStore } from './persistence/dead-letters.js'
import type { SchemaListing } from './http/routes/schemas.js'
import { bundledSchemasDir } from './version.js'

/** The plugins every broker runs before the caller's, configured from the config. */
export interface Builtins {
  readonly entries: readonly PluginEntry[]
  /** The registry's schemas, for `GET /api/schemas`. */
  readonly schemas: () => readonly SchemaListing[]
}

const DEFAULT_SCHEMAS_DIR = './schemas'

/**
 * dead-letter, then schema-validation when any validation applies (rules, or
 * `validation.default: reject`). The schema folder is read here, at start-up;
 * the default `./schemas` falls back to the schemas bundled with the package
 * when the working folder has none, so `createBroker()` works from anywhere.
 */
export async function builtinPlugins (config: BrokerConfig, store: DeadLetterStore, log: Logger): Promise<Builtins> {
  const entries: PluginEntry[] = [deadLetter({ store })]
  const validating = config.validation.rules.length > 0 || config.validation.default === 'reject'
  if (!validating) return { entries, schemas: () => [] }

  let dir = resolve(config.schemas.dir)
  if (config.schemas.dir === DEFAULT_SCHEMAS_DIR && !existsSync(dir)) {
    const bundled = bundledSchemasDir()
    if (bundled !== undefined) {
      log.info({ dir: bundled }, 'no ./schemas here: using the bundled albergue schemas')
      dir = bundled
    }
  }
  const registry = await SchemaRegistry.load(dir)
  entries.push(schemaValidation({ rules: config.validation.rules, default: config.validation.default, workers: config.validation.workers, registry }))
  return { entries, schemas: () => registry.list() }
}
