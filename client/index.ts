/**
 * ce-broker's client side (`ce-broker/client`): a publisher whose `publish` resolves once
 * the broker accepted the event, webhook verification and typed handlers, a gateway
 * interceptor and an outbox relay. Nothing of the broker's server code is imported here.
 */
export { createPublisher, type Published, type Publisher, type PublisherOptions } from './publisher.js'
export { buildEvent, topicOf, traceContext, type CloudEventJson, type DataOf, type EventMap, type EventOptions, type ExtensionValue, type TypeOf } from './event.js'
export { EventRejectedError, InvalidWebhookEventError, PublishUnansweredError, WebhookVerificationError, type FieldError, type RejectionRecord } from './errors.js'
export { createOutboxRelay, type BatchResult, type OutboxLogger, type OutboxRelay, type OutboxRelayOptions, type OutboxRelayStats, type RelayPublisher } from './outbox.js'
export { createOutboxTable, outboxTableSql, postgresOutbox, quoteIdentifier, type OutboxPool, type OutboxPoolClient, type PostgresOutboxOptions } from './outbox-postgres.js'
export type { BatchOutcome, ClaimRequest, OutboxBatch, OutboxRow, OutboxSource } from './outbox-source.js'
