import { auditSection } from '../plugins/audit/config.js'
import { authSection } from '../plugins/auth/config.js'
import { deadLettersSection } from '../plugins/dead-letter/config.js'
import { idempotencySection } from '../plugins/idempotency/config.js'
import { schemasSection, validationSection } from '../plugins/schema-validation/config.js'
import { webhooksSection } from '../plugins/webhooks/config.js'
import {
  configDefaults, configOptions, configTable, loadConfig as loadSections, loadedWith,
  type ConfigOf, type DeepPartial, type LoadConfigOptions, type LoadedConfig, type OptionSpec
} from './core/config/index.js'
import { ConfigError } from './core/errors.js'

/** The config sections of the built-in plugins, which every broker of this package runs. */
export const BUILTIN_SECTIONS = [schemasSection, validationSection, deadLettersSection, idempotencySection, auditSection, authSection, webhooksSection] as const

/** The whole, validated and frozen broker configuration: the core's settings and the built-in plugins'. */
export type BrokerConfig = ConfigOf<typeof BUILTIN_SECTIONS>

/** A partial configuration as a caller or a config file gives it; the defaults fill the rest. */
export type ConfigInput = DeepPartial<BrokerConfig>

/**
 * The core's `loadConfig` with the built-in plugins' sections: merge the defaults <
 * `input` < config file < CLI flags < `CE_BROKER_*` env, validate, deep-freeze.
 */
export function loadConfig (input: unknown = {}, options: LoadConfigOptions = {}): BrokerConfig {
  return loadSections(input, { ...options, sections: BUILTIN_SECTIONS })
}

/** Defaults: one embedded node on localhost, as Mosquitto 2 does until told otherwise. */
export function defaults (): BrokerConfig {
  return configDefaults(BUILTIN_SECTIONS)
}

/** Every setting reachable from the environment or the command line. The README's table lists the same. */
export const OPTIONS: readonly OptionSpec[] = configOptions(BUILTIN_SECTIONS)

/** The README's configuration table, as `scripts/config-table.ts` prints it. */
export function builtinConfigTable (): string {
  return configTable(BUILTIN_SECTIONS)
}

/**
 * `config` with the built-in plugins' settings, for the code that still reads them outside
 * the plugins; a config loaded without their sections is refused.
 */
export function builtinConfig (config: LoadedConfig): BrokerConfig {
  if (!loadedWith(config, BUILTIN_SECTIONS)) {
    throw new ConfigError('createBroker() options', 'sections', 'must include the built-in plugins\' config sections')
  }
  return config
}
