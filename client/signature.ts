import { createHmac, timingSafeEqual } from 'node:crypto'
import { WebhookVerificationError } from './errors.js'

/** How far a delivery's `webhook-timestamp` may be from now, in seconds (Standard Webhooks' 5 minutes). */
const TOLERANCE_SECONDS = 5 * 60

/**
 * The Standard Webhooks key of a secret, as the broker and the `standardwebhooks`
 * library take it: a `whsec_…` secret is base64 after its prefix; any other is used as
 * it is, one byte per character.
 */
export function webhookKey (secret: string): Buffer {
  return secret.startsWith('whsec_') ? Buffer.from(secret.slice('whsec_'.length), 'base64') : Buffer.from(secret, 'latin1')
}

/** The `v1` signature of a delivery: HMAC-SHA256 of `<id>.<timestamp>.<body>` over the body's bytes, base64. */
function signatureOf (key: Buffer, id: string, timestamp: string, body: Uint8Array): Buffer {
  return Buffer.from(createHmac('sha256', key).update(`${id}.${timestamp}.`).update(body).digest('base64'))
}

/**
 * Check a delivery's Standard Webhooks headers against its body's bytes. Written here
 * rather than with the `standardwebhooks` library's `verify`, which decodes the body as
 * UTF-8 before checking it: a binary body (a `data_base64` event in binary mode) would
 * not verify, and one byte not UTF-8 could be exchanged for another unseen.
 */
export function verifySignature (key: Buffer, headers: Readonly<Record<string, string>>, body: Uint8Array, now = Date.now()): void {
  const id = headers['webhook-id']
  const timestamp = headers['webhook-timestamp']
  const signatures = headers['webhook-signature']
  if (id === undefined || timestamp === undefined || signatures === undefined) throw new WebhookVerificationError('webhook signature not verified: missing webhook-id, webhook-timestamp or webhook-signature')
  const seconds = Number(timestamp)
  if (!/^[0-9]{1,12}$/.test(timestamp) || Math.abs(now / 1000 - seconds) > TOLERANCE_SECONDS) {
    throw new WebhookVerificationError(`webhook signature not verified: webhook-timestamp ${JSON.stringify(timestamp.slice(0, 20))} is not within ${TOLERANCE_SECONDS} s of now`)
  }
  const expected = signatureOf(key, id, timestamp, body)
  for (const versioned of signatures.split(' ')) {
    const [version, signature] = versioned.split(',')
    if (version !== 'v1' || signature === undefined) continue
    const given = Buffer.from(signature)
    if (given.length === expected.length && timingSafeEqual(given, expected)) return
  }
  throw new WebhookVerificationError('webhook signature not verified: no v1 signature matches the body')
}
