/**
 * The core's public API: what plugins are written against (hooks, context, errors,
 * CloudEvents helpers) and `createBroker` without built-in plugins. The package entry
 * (`src/index.ts`) adds the built-in plugins; nothing under `src/core/` imports them.
 */
export {
  loadConfig, readConfigFile, configSection, enumOf, setting, loadedWith, configDefaults, configOptions, configTable, CORE_SECTIONS,
  type ConfigSection, type ConfigOf, type CoreConfig, type CoreConfigInput, type LoadedConfig, type LoadConfigOptions, type LogLevel, type OptionSpec,
  type SettingMeta, type Settings, type Shortcut, type TlsFiles, type TracingConfig, type DeepPartial, type DeepReadonly
} from './config/index.js'
export {
  BrokerError, ConfigError, PluginError, ReservedTopicError, ConnectRefusedError, BadRequestError, InternalError, ListenError, SchemaFileError, EventRejectedError, DuplicateEventError, DeliveryFailedError, PublishNotAuthorizedError, LimitExceededError,
  SubscribeNotAuthorizedError, UnavailableError, UnauthorizedError, ForbiddenError, DeniedAddressError, WebhookBacklogError,
  REJECT_REASONS, type RejectReason, type EventProblem, type EventSummary,
  toBrokerError, messageOf, type Disposition
} from './errors.js'
export { createLogger, type Logger } from './logger.js'
export { LogSampler } from './log-sampler.js'
export {
  definePlugin, service,
  type AuthorizePublishHandler, type AuthorizeSubscribeHandler, type ConnectAttempt, type ConnectHandler, type Dispose,
  type HookRegistry, type Origin, type OutgoingMessage, type Plugin, type PluginContext, type PluginEntry, type PluginMeta, type PluginSpec,
  type PublishAttempt, type PublishedHandler, type PublishedMessage, type SubscribeAttempt, type Transport, type Service, type MqttSubscriber,
  type DeadLetterHandler, type DecidedHandler, type PublishVerdict, type SubmitOptions, type Identity, type ConnectRefusedHandler, type Delivery, type ForwardHandler,
  type PluginTracing, type TraceCarrier
} from './context.js'
export { EnvelopeChecker, toFieldErrors, MAX_ERRORS, type CloudEvent, type EnvelopeResult, type FieldError } from './cloudevents/envelope.js'
export { typeToTopic, topicToType, typeMatchesTopic, dottedToFilter, cloudEventTopics } from './cloudevents/topic.js'
export { isRfc3339, isRfc3339Date } from './cloudevents/rfc3339.js'
export {
  formatTraceparent, parseTraceparent, propagatedTraceContext, traceContextProblem, traceparentProblem, tracestateProblem, MAX_TRACESTATE_MEMBERS, type Traceparent
} from './tracing/index.js'
export { compileFilter, topicFilterProblem } from './topics.js'
export { AUDIT_LEVEL, AUDIT_PREFIX, DISCARD_PREFIX, DLQ_PREFIX, REJECTIONS_PREFIX, STATS_PREFIX, SYS_PREFIX, isReserved } from './reserved-topics.js'
export { hashApiKey, newApiKey, type ApiKeyInput, type ApiScope } from './http/api-keys.js'
export { errorBody, httpAnswerOf } from './http/errors.js'
export { TRANSPORTS } from './transport/connections.js'
export { addressKey } from './transport/admission.js'
export { RECENT_PARSES, parseJson, viewPayload, nestingDepth, nestedDeeperThan, mayNestDeeperThan, MAX_JSON_DEPTH, MAX_VIEW_DEPTH, type ParsedJson, type PayloadView } from './payload.js'
export { bundledSchemasDir, packageVersion } from './version.js'
export { createBroker, type Broker, type BrokerInput, type BoundPorts, type Preset } from './broker.js'
export { DEFAULT_OUTAGE_HOLD_MS } from './persistence/index.js'
