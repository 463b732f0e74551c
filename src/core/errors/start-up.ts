/** Errors that stop start-up: config, plugins, schema files, listeners. */
import { BrokerError, errorCode, messageOf } from './base.js'

const CONFIG_INVALID = errorCode('BRK_CONFIG_INVALID', 'a config file, flag or `CE_BROKER_*` variable is invalid, or a TLS file cannot be read')

/** A config file, environment variable or flag is invalid; start-up stops. */
export class ConfigError extends BrokerError {
  readonly code = CONFIG_INVALID
  /**
   * @param source where the value came from: `config file broker.yaml`, `env CE_BROKER_MQTT_PORT`, `flag --mqtt-port`
   * @param path dotted key path such as `mqtt.port`
   */
  constructor (readonly source: string, readonly path: string, detail: string, options?: ErrorOptions) {
    super(path === '' ? `${source}: ${detail}` : `${source}: ${path} ${detail}`, options)
  }
}

const LISTEN_FAILED = errorCode('BRK_LISTEN_FAILED', 'a listener cannot bind (`EADDRINUSE`, `EADDRNOTAVAIL`, `EACCES`)')

/** A listener could not bind its address (port in use, address not available, permission). */
export class ListenError extends BrokerError {
  readonly code = LISTEN_FAILED
  constructor (readonly listener: string, readonly address: string, options: { cause: unknown }) {
    super(`cannot listen for ${listener} on ${address}: ${messageOf(options.cause)}`, options)
  }
}

const SCHEMA_FILE_INVALID = errorCode('BRK_SCHEMA_FILE_INVALID', 'a file of the schema registry is not JSON, not a valid draft 2020-12 / draft-07 schema, has an unresolvable `$ref`, or checks a type another file checks')

/** A schema file of the registry is unreadable, invalid or conflicts with another; start-up stops. */
export class SchemaFileError extends BrokerError {
  readonly code = SCHEMA_FILE_INVALID
  constructor (readonly file: string, detail: string, options?: ErrorOptions) {
    super(`schema ${file} ${detail}`, options)
  }
}

const PLUGIN_INVALID = errorCode('BRK_PLUGIN_INVALID', 'a plugin is loaded twice, misses a `dependsOn`, fails its setup or exceeds `pluginTimeoutMs`')

/** A plugin is wired wrongly: missing dependency, setup failure or timeout. */
export class PluginError extends BrokerError {
  readonly code = PLUGIN_INVALID
  constructor (readonly plugin: string, detail: string, options?: ErrorOptions) {
    super(`plugin "${plugin}": ${detail}`, options)
  }
}
