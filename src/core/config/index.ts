/**
 * The broker's configuration, defined once: each section (the core's here, each plugin's
 * in its folder) is one TypeBox schema with its defaults and its settings' metadata, from
 * which come the types, the defaults, the validation, the `CE_BROKER_*` variables, the
 * flags and the README's table.
 */
export {
  configSection, enumOf, setting,
  type ConfigSection, type DeepPartial, type DeepReadonly, type PluginSections, type SectionConfig, type SectionsConfig, type SettingMeta, type Settings, type Shortcut
} from './section.js'
export { CORE_SECTIONS, type ApiKeyInput, type ApiScope, type CoreConfig, type CoreConfigInput, type LogLevel } from './core-sections.js'
export type { TlsFiles } from './listeners.js'
export type { TracingConfig } from './tracing.js'
export { configDefaults, loadConfig, loadedWith, readConfigFile, type ConfigOf, type LoadConfigOptions, type LoadedConfig } from './load.js'
export { configOptions, configTable, type OptionSpec } from './options.js'
