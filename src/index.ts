/**
 * ce-broker: an embeddable MQTT broker for CloudEvents on top of Aedes.
 *
 * ```ts
 * import { createBroker } from 'ce-broker'
 * const broker = await createBroker({ mqtt: { port: 0 }, http: { port: 0 } })
 * await broker.close()
 * ```
 */
export { loadConfig, readConfigFile, defaults, OPTIONS, type BrokerConfig, type ConfigInput, type LoadConfigOptions, type LogLevel, type OptionSpec, type TlsFiles, type ValidationRule, type WebhookSubscriptionInput, type AclRuleInput, type AuthJwt, type AuthUser } from './config.js'
export {
  BrokerError, ConfigError, PluginError, ReservedTopicError, ConnectRefusedError, BadRequestError, InternalError, ListenError, SchemaFileError, EventRejectedError, DuplicateEventError, DeliveryFailedError, PublishNotAuthorizedError, LimitExceededError,
  type RejectReason, type EventProblem, type EventSummary,
  toBrokerError, type Disposition
} from './errors.js'
export { createLogger, type Logger } from './logger.js'
export {
  definePlugin,
  type AuthorizePublishHandler, type AuthorizeSubscribeHandler, type ConnectAttempt, type ConnectHandler, type Dispose,
  type HookRegistry, type Origin, type OutgoingMessage, type Plugin, type PluginContext, type PluginEntry, type PluginMeta,
  type PublishAttempt, type PublishedHandler, type PublishedMessage, type SubscribeAttempt, type Transport,
  type DeadLetterHandler, type DecidedHandler, type PublishVerdict, type SubmitOptions, type Identity, type ConnectRefusedHandler, type Delivery, type ForwardHandler
} from './context.js'
export { EnvelopeChecker, toFieldErrors, MAX_ERRORS, type CloudEvent, type EnvelopeResult, type FieldError } from './cloudevents/envelope.js'
export { typeToTopic, topicToType, typeMatchesTopic } from './cloudevents/topic.js'
export { isRfc3339, isRfc3339Date } from './cloudevents/rfc3339.js'
export { compileFilter, topicFilterProblem } from './topics.js'
export { REJECTIONS_PREFIX } from './hooks/authorize-subscribe.js'
export { hashApiKey, newApiKey, type ApiKeyInput, type ApiScope } from './http/api-keys.js'
export { TRANSPORTS } from './transport/connections.js'
export { addressKey } from './transport/admission.js'
export { viewPayload, nestingDepth, nestedDeeperThan, mayNestDeeperThan, MAX_JSON_DEPTH, MAX_VIEW_DEPTH, type PayloadView } from './payload.js'
export {
  MemoryDeadLetterStore,
  type DeadLetterEntry, type DeadLetterPage, type DeadLetterQuery, type DeadLetterRecord, type DeadLetterStore, type OriginalMessage
} from './persistence/dead-letters.js'
export { RedisDeadLetterStore } from './persistence/redis-dead-letters.js'

// Last on purpose: broker.js loads the built-in plugins, which import this module. Every
// export above is evaluated by then, so the cycle finds them initialised.
export { createBroker, type Broker, type BrokerInput, type BoundPorts } from './broker.js'
