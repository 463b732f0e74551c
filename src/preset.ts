import type { LoadedConfig, PluginEntry, Preset } from './core/index.js'
import { builtinConfig } from './config.js'
import { audit } from '../plugins/audit/index.js'
import { auth, checkAclRules } from '../plugins/auth/index.js'
import { catalog } from '../plugins/catalog/index.js'
import { deadLetter } from '../plugins/dead-letter/index.js'
import { idempotency } from '../plugins/idempotency/index.js'
import { schemaValidation } from '../plugins/schema-validation/index.js'
import { webhooks, type Resolver } from '../plugins/webhooks/index.js'

/** What only code can give the built-in plugins. */
export interface BuiltinOverrides {
  /** How the webhooks resolve host names (default: the system resolver). */
  readonly resolve?: Resolver
}

/**
 * The built-in plugins, each configured from its section of the config, in order:
 * - `dead-letter` (`/api/dlq`);
 * - `auth` when users, JWTs or ACL rules are configured (first in the publish chain: a
 *   publish no ACL grants is refused before anything reads it; an ACL alone applies to
 *   anonymous clients, role `anonymous`; a rule that can never apply stops start-up);
 * - `schema-validation` (`/api/schemas`; checks only when a rule applies, or
 *   `validation.default` is `reject`);
 * - `idempotency` when validation reads events and `idempotency.enabled` (it keys on
 *   the events validation reads);
 * - `audit` (`/api/mqtt/messages`; records when `audit.enabled`), which sees every verdict;
 * - `webhooks` (`/api/webhooks`), which deliver what was published;
 * - `catalog` (`/api/catalog`), which notes who published each type.
 */
export function builtinPlugins (overrides: BuiltinOverrides = {}): Preset {
  return function builtins (loaded: LoadedConfig): PluginEntry[] {
    const config = builtinConfig(loaded)
    const entries: PluginEntry[] = [deadLetter(config.deadLetters)]
    const { auth: authConfig } = config
    if (authConfig.users.length > 0 || authConfig.jwt !== undefined || authConfig.acl.length > 0) {
      // here, not in the plugin's setup: a rule that can never apply is a ConfigError, not a plugin failure
      checkAclRules(authConfig, 'config')
      entries.push(auth(authConfig))
    }
    entries.push(schemaValidation({ schemas: config.schemas, validation: config.validation }))
    const validating = config.validation.rules.length > 0 || config.validation.default === 'reject'
    if (validating && config.idempotency.enabled) entries.push(idempotency(config.idempotency))
    entries.push(audit(config.audit))
    entries.push(webhooks({ ...config.webhooks, ...(overrides.resolve === undefined ? {} : { resolve: overrides.resolve }) }))
    entries.push(catalog())
    return entries
  }
}
