/**
 * Every error ce-broker raises on purpose is a `BrokerError` with a stable `code`,
 * defined in `./errors/` by area and gathered here: import errors from this module.
 * The codes, their meaning and their fix are listed in the README's error table;
 * `ERROR_CODES` holds each code with its meaning once this module is loaded.
 */
export {
  BrokerError, InternalError, ERROR_CODES, toBrokerError, messageOf,
  type Disposition, type EventSummary, type RefusalLog, type RefusedPublish
} from './errors/base.js'
export { ConfigError, ListenError, SchemaFileError, PluginError } from './errors/start-up.js'
export {
  EventRejectedError, DuplicateEventError, ReservedTopicError, LimitExceededError, PublishNotAuthorizedError, UnavailableError,
  REJECT_REASONS, type RejectReason, type EventProblem
} from './errors/publish.js'
export { ConnectRefusedError, SubscribeNotAuthorizedError, BadRequestError, UnauthorizedError, ForbiddenError } from './errors/access.js'
export { DeliveryFailedError, DeniedAddressError, WebhookBacklogError } from './errors/webhooks.js'
