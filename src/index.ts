/**
 * ce-broker: an embeddable MQTT broker for CloudEvents on top of Aedes.
 *
 * ```ts
 * import { createBroker } from 'ce-broker'
 * const broker = await createBroker({ mqtt: { port: 0 }, http: { port: 0 } })
 * await broker.close()
 * ```
 */
export { loadConfig, readConfigFile, defaults, OPTIONS, type BrokerConfig, type ConfigInput, type LoadConfigOptions, type LogLevel, type OptionSpec, type TlsFiles, type ValidationRule, type WebhookSubscriptionInput, type AclRuleInput, type AuthJwt, type AuthUser } from './core/config.js'
export {
  BrokerError, ConfigError, PluginError, ReservedTopicError, ConnectRefusedError, BadRequestError, InternalError, ListenError, SchemaFileError, EventRejectedError, DuplicateEventError, DeliveryFailedError, PublishNotAuthorizedError, LimitExceededError,
  SubscribeNotAuthorizedError, UnavailableError, UnauthorizedError, ForbiddenError, DeniedAddressError,
  REJECT_REASONS, type RejectReason, type EventProblem, type EventSummary,
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
export { AUDIT_LEVEL, AUDIT_PREFIX, DISCARD_PREFIX, DLQ_PREFIX, REJECTIONS_PREFIX, SYS_PREFIX, isReserved } from './core/reserved-topics.js'
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
export { createBroker, type Broker, type BrokerInput, type BoundPorts } from './core/broker.js'
