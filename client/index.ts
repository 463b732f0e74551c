/**
 * ce-broker's client side (`ce-broker/client`): a publisher whose `publish` resolves once
 * the broker accepted the event, webhook verification and typed handlers, a gateway
 * interceptor and an outbox relay. Nothing of the broker's server code is imported here.
 */
export { createPublisher, type Published, type Publisher, type PublisherOptions } from './publisher.js'
export { buildEvent, topicOf, traceContext, type CloudEventJson, type DataOf, type EventMap, type EventOptions, type ExtensionValue, type TypeOf } from './event.js'
export { EventRejectedError, InvalidWebhookEventError, PublishUnansweredError, WebhookVerificationError, type FieldError, type RejectionRecord } from './errors.js'
export { verifyWebhook, type VerifyOptions, type WebhookRequest } from './webhook.js'
export { createWebhookHandler, type FastifyReplyLike, type TypedEvent, type WebhookAnswer, type WebhookHandler, type WebhookHandlerOptions } from './webhook-handler.js'
export { memoryProcessedStore, redisProcessedStore, type Claim, type ProcessedStore, type ProcessedStoreOptions } from './processed.js'
export { extractEvents, gatewayInterceptor, gatewayMiddleware, toEvent, EVENTS_HEADER, type Extracted, type ExtractLimits, type GatewayEvents, type GatewayInterceptorOptions, type GatewayLogger, type GatewayMiddleware, type GatewayMiddlewareOptions, type GatewayOptions, type GatewayOutcome, type GatewayOutcomeReport, type GatewayPublisher, type GatewayResponse, type GatewayStats, type HeaderValue, type ExtractProblem } from './gateway/index.js'
export { createOutboxRelay, type BatchResult, type OutboxLogger, type OutboxRelay, type OutboxRelayOptions, type OutboxRelayStats, type RelayPublisher } from './outbox.js'
export { createOutboxTable, outboxTableSql, postgresOutbox, quoteIdentifier, type OutboxPool, type OutboxPoolClient, type PostgresOutboxOptions } from './outbox-postgres.js'
export type { BatchOutcome, ClaimRequest, OutboxBatch, OutboxRow, OutboxSource } from './outbox-source.js'
