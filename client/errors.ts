/** A field the broker named in its refusal: `/data/nights`, `must be >= 1`. */
export interface FieldError {
  readonly path: string
  readonly message: string
}

/** The dead-letter record the broker tells a publisher on `$rejections/<clientId>` (PRODUCT §3). */
export interface RejectionRecord {
  readonly id: string
  readonly type: string
  readonly data: {
    readonly reason: string
    readonly errors?: readonly FieldError[]
    readonly topic?: string
    readonly clientId?: string
    readonly payload?: unknown
    readonly payloadBase64?: string
  }
}

/**
 * The broker refused the event: `reason` is its reason code (`schema_validation_failed`,
 * `invalid_cloudevent`, `not_authorized`, ...) and `errors` the fields it named. What an
 * MQTT 5 reason code or an HTTP 422 would have said, over MQTT 3.1.1.
 */
export class EventRejectedError extends Error {
  override readonly name = 'EventRejectedError'
  /** The broker's reason code. */
  readonly reason: string
  readonly errors: readonly FieldError[]
  readonly eventId: string
  /** The record as the broker sent it. */
  readonly record: RejectionRecord

  constructor (eventId: string, record: RejectionRecord) {
    const errors = record.data.errors ?? []
    const detail = errors.map((e) => e.path === '' ? e.message : `${e.path}: ${e.message}`).join('; ')
    super(`event ${eventId} rejected: ${record.data.reason}${detail === '' ? '' : ` (${detail})`}`)
    this.reason = record.data.reason
    this.errors = errors
    this.eventId = eventId
    this.record = record
  }

  /** The reason code, as Node's errors carry theirs. */
  get code (): string {
    return this.reason
  }
}

/**
 * No answer from the broker in time, or the connection closed first: the event may or
 * may not have been accepted. Publishing it again with the same `id` is safe: a broker
 * that accepted it answers `{ duplicate: true }`.
 */
export class PublishUnansweredError extends Error {
  override readonly name = 'PublishUnansweredError'
  readonly code = 'publish_unanswered'

  constructor (readonly eventId: string, why: string) {
    super(`event ${eventId}: ${why}; it may have been accepted, publish it again with the same id to know`)
  }
}

/** A webhook request that does not verify: no or a wrong Standard Webhooks signature, or a timestamp out of tolerance. */
export class WebhookVerificationError extends Error {
  override readonly name = 'WebhookVerificationError'
  readonly code = 'webhook_signature_invalid'
  readonly status = 401
}

/** A verified webhook request whose body or headers are no CloudEvent. */
export class InvalidWebhookEventError extends Error {
  override readonly name = 'InvalidWebhookEventError'
  readonly code = 'invalid_cloudevent'
  readonly status = 400
}
