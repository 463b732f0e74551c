import { createHash } from 'node:crypto'
import { CloudEvent, HTTP } from 'cloudevents'
import { Webhook } from 'standardwebhooks'
import type { Subscription } from './subscriptions.js'

/** One HTTP request of a delivery: what is POSTed to the subscription's URL. */
export interface WebhookRequest {
  readonly headers: Record<string, string>
  readonly body: string | Uint8Array
}

/**
 * The Standard Webhooks `webhook-id` of an (event, subscription) pair: the same on every
 * attempt and every node, so a receiver can drop the copies at-least-once delivery makes.
 */
export function webhookId (subscriptionId: string, source: string, id: string): string {
  return `msg_${createHash('sha256').update(`${subscriptionId}\n${source}\n${id}`).digest('base64url').slice(0, 32)}`
}

/**
 * The request delivering `event` (a checked CloudEvent, `raw` its bytes as published)
 * in the CloudEvents HTTP binding. Binary mode (the default): `ce-*` headers, the
 * content type from `datacontenttype`, the body is `data`; made by the `cloudevents`
 * SDK, except that `ce-time` is the attribute as sent (the SDK reformats it, and
 * invents one when there is none). Structured mode: the event's own bytes, as
 * `application/cloudevents+json`. With a secret, Standard Webhooks headers signed
 * with the `standardwebhooks` library over the body as sent.
 */
export function buildRequest (event: Record<string, unknown>, raw: Buffer, subscription: Subscription, id: string, now: Date): WebhookRequest {
  let headers: Record<string, string>
  let body: string | Uint8Array
  if (subscription.mode === 'structured') {
    headers = { 'content-type': 'application/cloudevents+json; charset=utf-8' }
    body = raw
  } else {
    const message = HTTP.binary(new CloudEvent(event, false))
    headers = {}
    for (const [name, value] of Object.entries(message.headers)) headers[name] = String(value)
    if (typeof event.time === 'string') headers['ce-time'] = event.time
    else delete headers['ce-time']
    body = typeof message.body === 'string' || message.body instanceof Uint8Array ? message.body : JSON.stringify(message.body ?? null)
  }
  if (subscription.secret !== undefined) {
    const signer = signerOf(subscription, subscription.secret)
    const payload = typeof body === 'string' ? body : Buffer.from(body)
    headers['webhook-id'] = id
    headers['webhook-timestamp'] = String(Math.floor(now.getTime() / 1000))
    headers['webhook-signature'] = signer.sign(id, now, payload)
  }
  return { headers, body }
}

/** One signer per subscription object (an update makes a new object): decoding the secret is not per request. */
const signers = new WeakMap<Subscription, Webhook>()

function signerOf (subscription: Subscription, secret: string): Webhook {
  let signer = signers.get(subscription)
  if (signer === undefined) {
    signer = secret.startsWith('whsec_') ? new Webhook(secret) : new Webhook(secret, { format: 'raw' })
    signers.set(subscription, signer)
  }
  return signer
}
