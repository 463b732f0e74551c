import { createHmac } from 'node:crypto'

/**
 * The Standard Webhooks key of a subscription's secret, as the `standardwebhooks` library
 * takes it: a `whsec_…` secret is base64 after its prefix; any other is used as it is,
 * one byte per character (`new Webhook(secret, { format: 'raw' })`).
 */
export function webhookKey (secret: string): Buffer {
  return secret.startsWith('whsec_') ? Buffer.from(secret.slice('whsec_'.length), 'base64') : Buffer.from(secret, 'latin1')
}

/**
 * `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`, over the body's bytes as sent
 * (Standard Webhooks §Signature scheme). Not the `standardwebhooks` library's `sign`:
 * it decodes the body as UTF-8 first, which changes a binary body (a `data_base64`
 * event delivered in binary mode), and a receiver checking the bytes it got would refuse
 * it. For a UTF-8 body both are the same.
 */
export function signWebhook (key: Buffer, id: string, timestampSeconds: number, body: string | Uint8Array): string {
  return `v1,${createHmac('sha256', key).update(`${id}.${timestampSeconds}.`).update(body).digest('base64')}`
}
