/**
 * ce-broker: an embeddable MQTT broker for CloudEvents on top of Aedes.
 *
 * ```ts
 * import { createBroker } from 'ce-broker'
 * const broker = await createBroker({ mqtt: { port: 0 }, http: { port: 0 } })
 * await broker.close()
 * ```
 */
export { loadConfig, defaults, OPTIONS, BUILTIN_SECTIONS, type BrokerConfig, type ConfigInput } from './config.js'
export {
  readConfigFile, configSection, enumOf, setting, loadedWith,
  type ConfigSection, type LoadConfigOptions, type LogLevel, type OptionSpec, type SettingMeta, type Settings, type Shortcut, type TlsFiles
} from './core/config/index.js'
export type { ValidationRule } from '../plugins/schema-validation/config.js'
export type { WebhookSubscriptionInput } from '../plugins/webhooks/config.js'
export type { AclRuleInput, AuthJwt, AuthUser } from '../plugins/auth/config.js'
export {
  BrokerError, ConfigError, PluginError, ReservedTopicError, ConnectRefusedError, BadRequestError, InternalError, ListenError, SchemaFileError, EventRejectedError, DuplicateEventError, DeliveryFailedError, PublishNotAuthorizedError, LimitExceededError,
  type RejectReason, type EventProblem, type EventSummary,
  toBrokerError, type Disposition
} from './core/errors.js'
export { createLogger, type Logger } from './core/logger.js'
export {
  definePlugin,
  type AuthorizePublishHandler, type AuthorizeSubscribeHandler, type ConnectAttempt, type ConnectHandler, type Dispose,
  type HookRegistry, type Origin, type OutgoingMessage, type Plugin, type PluginContext, type PluginEntry, type PluginMeta,
  type PublishAttempt, type PublishedHandler, type PublishedMessage, type SubscribeAttempt, type Transport,
  type DeadLetterHandler, type DecidedHandler, type PublishVerdict, type SubmitOptions, type Identity, type ConnectRefusedHandler, type Delivery, type ForwardHandler
} from './core/context.js'
export { EnvelopeChecker, toFieldErrors, MAX_ERRORS, type CloudEvent, type EnvelopeResult, type FieldError } from './core/cloudevents/envelope.js'
export { typeToTopic, topicToType, typeMatchesTopic } from './core/cloudevents/topic.js'
export { isRfc3339, isRfc3339Date } from './core/cloudevents/rfc3339.js'
export { compileFilter, topicFilterProblem } from './core/topics.js'
export { REJECTIONS_PREFIX } from './core/hooks/authorize-subscribe.js'
export { hashApiKey, newApiKey, type ApiKeyInput, type ApiScope } from './core/http/api-keys.js'
export { TRANSPORTS } from './core/transport/connections.js'
export { addressKey } from './core/transport/admission.js'
export { viewPayload, nestingDepth, nestedDeeperThan, mayNestDeeperThan, MAX_JSON_DEPTH, MAX_VIEW_DEPTH, type PayloadView } from './core/payload.js'
export {
  MemoryDeadLetterStore,
  type DeadLetterEntry, type DeadLetterPage, type DeadLetterQuery, type DeadLetterRecord, type DeadLetterStore, type OriginalMessage
} from './core/persistence/dead-letters.js'
export { RedisDeadLetterStore } from './core/persistence/redis-dead-letters.js'

// Last on purpose: broker.js loads the built-in plugins, which import this module. Every
// export above is evaluated by then, so the cycle finds them initialised.
import { createBroker as startBroker, type Broker, type BrokerInput as CoreBrokerInput } from './core/broker.js'
import { BUILTIN_SECTIONS, type ConfigInput } from './config.js'
export type { Broker, BoundPorts } from './core/broker.js'

/** `createBroker()` input: a partial config (the built-in plugins' settings included) plus what only code can give. */
export type BrokerInput = CoreBrokerInput & ConfigInput

/**
 * Start a broker (see the core's `createBroker`) with the built-in plugins' config
 * sections, and any others the caller's plugins need (`sections`).
 */
export async function createBroker (input: BrokerInput = {}): Promise<Broker> {
  return await startBroker({ ...input, sections: [...BUILTIN_SECTIONS, ...(input.sections ?? [])] })
}
