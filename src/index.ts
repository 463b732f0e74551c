/**
 * ce-broker: an embeddable MQTT broker for CloudEvents on top of Aedes.
 *
 * ```ts
 * import { createBroker } from 'ce-broker'
 * const broker = await createBroker({ mqtt: { port: 0 }, http: { port: 0 } })
 * await broker.close()
 * ```
 */
export { createBroker, type Broker, type BrokerInput, type BoundPorts } from './broker.js'
export { loadConfig, readConfigFile, defaults, OPTIONS, type BrokerConfig, type ConfigInput, type LoadConfigOptions, type LogLevel, type OptionSpec, type TlsFiles } from './config.js'
export {
  BrokerError, ConfigError, PluginError, ReservedTopicError, ConnectRefusedError, BadRequestError, InternalError, ListenError, SchemaFileError,
  toBrokerError, type Disposition
} from './errors.js'
export { createLogger, type Logger } from './logger.js'
export {
  definePlugin,
  type AuthorizePublishHandler, type AuthorizeSubscribeHandler, type ConnectAttempt, type ConnectHandler, type Dispose,
  type HookRegistry, type Origin, type OutgoingMessage, type Plugin, type PluginContext, type PluginEntry, type PluginMeta,
  type PublishAttempt, type PublishedHandler, type PublishedMessage, type SubscribeAttempt, type Transport
} from './context.js'
