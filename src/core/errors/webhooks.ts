/** Errors of webhook deliveries: the broker's own work for an event it accepted. */
import { BrokerError, errorCode, type RefusalLog } from './base.js'

const DELIVERY_FAILED = errorCode('BRK_DELIVERY_FAILED', 'a webhook delivery failed for good (`delivery_failed`), was still failing when its time-to-live passed (`expired`), or found the queue full (`queue_full`); the dead-letter record names the subscription')

/**
 * An accepted event that could not be delivered to a webhook subscription: its
 * attempts ran out or the endpoint refused it for good (`delivery_failed`), it was
 * still failing when `webhooks.defaults.ttlMs` had passed since it was accepted
 * (`expired`), or the delivery queue was full (`queue_full`). Kept as a dead letter for that subscription.
 */
export class DeliveryFailedError extends BrokerError {
  readonly code = DELIVERY_FAILED
  override readonly disposition = 'dead-letter'

  constructor (
    override readonly reason: 'delivery_failed' | 'expired' | 'queue_full',
    readonly subscription: string,
    readonly eventId: string | undefined,
    readonly attempts: number,
    readonly lastStatus: number | undefined,
    detail: string
  ) {
    super(`delivery to subscription ${subscription} failed (${reason}): ${detail}`)
  }

  /** The broker's own delivery failed, not a client's doing: never sampled. */
  override refusalLog (): RefusalLog {
    return {
      level: 'warn',
      sampled: false,
      msg: 'webhook delivery failed for good: dead-lettered',
      fields: { reason: this.reason, subscription: this.subscription, eventId: this.eventId, attempts: this.attempts, lastStatus: this.lastStatus, detail: this.message }
    }
  }
}

const WEBHOOK_ADDRESS_DENIED = errorCode('BRK_WEBHOOK_ADDRESS_DENIED', 'a webhook delivery\'s host resolved to (or is) an address in `webhooks.denyNetworks`: the connection is not opened and the delivery is dead-lettered as `delivery_failed`')

/**
 * A webhook connection was not opened: the address its host resolved to (or is) lies
 * in a denied network. A delivery meeting it fails for good, it is not retried. The
 * webhooks plugin words the message (it knows why a network is denied).
 */
export class DeniedAddressError extends BrokerError {
  readonly code = WEBHOOK_ADDRESS_DENIED

  /** @param network the entry of `webhooks.denyNetworks` (or of the networks always denied) that holds `address` */
  constructor (readonly host: string, readonly address: string, readonly network: string, message: string) {
    super(message)
  }
}

const WEBHOOK_BACKLOG = errorCode('BRK_WEBHOOK_BACKLOG', 'an event sent over HTTP is bound for a webhook subscription whose queue is past `webhooks.intake.highWater`: 429 with `Retry-After` (an MQTT publish waits instead)')

/**
 * An HTTP publish bound for a webhook subscription that is behind: its queue holds
 * `webhooks.intake.highWater` deliveries or more. Not kept: the sender is told to send
 * again later (429, `Retry-After`), as an MQTT publisher is slowed by its ack waiting.
 */
export class WebhookBacklogError extends BrokerError {
  readonly code = WEBHOOK_BACKLOG

  constructor (readonly subscription: string, readonly depth: number) {
    super(`webhook subscription ${subscription} has ${depth} deliveries waiting: send the event again later`)
  }
}
