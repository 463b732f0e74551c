import assert from 'node:assert/strict'
import { test } from 'node:test'
import { backoffMs, isRetryable, retryAfterMs, toMqttFilter } from '../../plugins/webhooks/index.js'

test('dotted filters map to MQTT filters; MQTT filters stay as they are; bad ones are refused', () => {
  assert.equal(toMqttFilter('albergue.v1.booking.*'), 'albergue/v1/booking/#')
  assert.equal(toMqttFilter('albergue.*.booking.reserved'), 'albergue/+/booking/reserved')
  assert.equal(toMqttFilter('*'), '#')
  assert.equal(toMqttFilter('albergue.v1.payment.completed'), 'albergue/v1/payment/completed')
  assert.equal(toMqttFilter('albergue/+/payment/#'), 'albergue/+/payment/#')
  assert.throws(() => toMqttFilter('albergue/#/x'), /topic filter "albergue\/#\/x"/)
})

test('backoff is a random wait below an exponential ceiling, capped; Retry-After reads seconds and dates', () => {
  const policy = { maxAttempts: 8, initialDelayMs: 1000, maxDelayMs: 300_000 }
  assert.deepEqual([1, 2, 3, 10].map((attempt) => backoffMs(policy, attempt, () => 0.999_999)), [999, 1999, 3999, 299_999])
  assert.equal(backoffMs(policy, 4, () => 0), 0)
  assert.equal(retryAfterMs('7'), 7000)
  assert.equal(retryAfterMs(new Date(Date.UTC(2026, 10, 23, 10, 0, 30)).toUTCString(), Date.UTC(2026, 10, 23, 10, 0, 0)), 30_000)
  assert.equal(retryAfterMs('soon'), undefined)
  assert.equal(retryAfterMs(undefined), undefined)
  assert.deepEqual([408, 429, 500, 503, 400, 404, 410].map(isRetryable), [true, true, true, true, false, false, false])
})
