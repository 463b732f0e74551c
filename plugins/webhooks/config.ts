import { Type, type TInteger } from '@sinclair/typebox'
import { configSection, enumOf, setting, type SettingMeta, type Settings } from '../../src/core/index.js'

/** Bounds of a retry policy's fields, in the config's defaults and in a subscription's override. */
const RETRY_BOUNDS = {
  maxAttempts: { minimum: 1, maximum: 100 },
  initialDelayMs: { minimum: 0 },
  maxDelayMs: { minimum: 0 }
} as const

/** A subscription's override of `webhooks.defaults.retry`: any of its fields, no default of its own. */
const retryOverride = Type.Object({
  maxAttempts: Type.Optional(Type.Integer(RETRY_BOUNDS.maxAttempts)),
  initialDelayMs: Type.Optional(Type.Integer(RETRY_BOUNDS.initialDelayMs)),
  maxDelayMs: Type.Optional(Type.Integer(RETRY_BOUNDS.maxDelayMs))
}, { additionalProperties: false })

/** A webhook subscription as registered (PRODUCT §4): in the config, and the body of `POST /api/webhooks`. */
const subscriptionSchema = Type.Object({
  service_id: Type.String({ minLength: 1 }),
  webhook_url: Type.String({ format: 'uri' }),
  /** MQTT filters or the dotted form (`albergue.v1.booking.*`). */
  topic_filters: Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
  secret: Type.Optional(Type.String({ minLength: 16 })),
  /** `binary` (the default) or `structured` CloudEvents HTTP binding. */
  mode: Type.Optional(enumOf(['binary', 'structured'])),
  retry: Type.Optional(retryOverride),
  timeoutMs: Type.Optional(Type.Integer({ minimum: 1 })),
  /** Deliver the events of one key one at a time, in the order they were accepted: the `partitionkey` or `subject` attribute; `none` (the default) orders nothing. */
  ordering: Type.Optional(enumOf(['none', 'partitionkey', 'subject'])),
  /** Run the CloudEvents web hook validation handshake (an `OPTIONS` request) before delivering; default false. */
  handshake: Type.Optional(Type.Boolean()),
  /**
   * Attribute filters in Knative's shape (`exact`, `prefix`, `suffix`, `all`, `any`,
   * `not`, `cesql`), all of which must pass; checked and compiled by `./filters/`,
   * whose errors name the filter's path.
   */
  filters: Type.Optional(Type.Array(Type.Unknown()))
}, { additionalProperties: false })

export type WebhookSubscriptionInput = Settings<typeof subscriptionSchema>

/** A positive integer setting with its default. */
function positive (value: number, meta: SettingMeta, minimum = 1): TInteger {
  return Type.Integer({ minimum, default: value, ...setting(meta) })
}

/** Signed webhook deliveries: what every subscription gets, and the subscriptions registered at start-up. */
export const webhooksSection = configSection({
  key: 'webhooks',
  schema: Type.Object({
    // what every subscription gets unless it says otherwise
    defaults: Type.Object({
      retry: Type.Object({
        maxAttempts: Type.Integer({
          ...RETRY_BOUNDS.maxAttempts,
          default: 8,
          ...setting({ env: 'CE_BROKER_WEBHOOKS_MAX_ATTEMPTS', doc: 'attempts per webhook delivery before it is dead-lettered (`delivery_failed`)' })
        }),
        initialDelayMs: Type.Integer({
          ...RETRY_BOUNDS.initialDelayMs,
          default: 1000,
          ...setting({ env: 'CE_BROKER_WEBHOOKS_INITIAL_DELAY_MS', doc: 'backoff ceiling before the first retry; it doubles per attempt, and the wait is a random time below it (full jitter)' })
        }),
        maxDelayMs: Type.Integer({
          ...RETRY_BOUNDS.maxDelayMs,
          default: 300_000,
          ...setting({ env: 'CE_BROKER_WEBHOOKS_MAX_DELAY_MS', doc: 'longest wait between attempts, `Retry-After` included' })
        })
      }, { additionalProperties: false }),
      timeoutMs: positive(10_000, { env: 'CE_BROKER_WEBHOOKS_TIMEOUT_MS', doc: 'timeout of one webhook request' }),
      ttlMs: positive(86_400_000, { env: 'CE_BROKER_WEBHOOKS_TTL_MS', doc: 'a delivery still failing this long after its event was accepted is dead-lettered (`expired`); the last retry waits no longer than that' }),
      concurrency: positive(128, { env: 'CE_BROKER_WEBHOOKS_CONCURRENCY', doc: 'webhook requests in flight per subscription at most: each subscription\'s limit starts at 8 and adapts to its receiver (see [Webhook concurrency](#webhook-concurrency)) up to this' }),
      latencyTargetMs: positive(1_000, { env: 'CE_BROKER_WEBHOOKS_LATENCY_TARGET_MS', doc: 'an answer slower than this counts as a sign of overload, as a 503 does: the subscription\'s concurrency shrinks' })
    }, { additionalProperties: false }),
    // backpressure from a subscription that is behind to the publishers of its events
    intake: Type.Object({
      highWater: positive(1_000, { env: 'CE_BROKER_WEBHOOKS_INTAKE_HIGH_WATER', doc: 'deliveries waiting for one subscription from which publishes bound for it are slowed: an MQTT publish waits (not acked) until it is down to half, an HTTP one is answered 429 with `Retry-After`' }),
      holdMs: positive(10_000, { env: 'CE_BROKER_WEBHOOKS_INTAKE_HOLD_MS', doc: 'how long such an MQTT publish waits at most; then it goes on (dead-lettered `queue_full` only if `webhooks.maxQueued` is reached)' })
    }, { additionalProperties: false }),
    maxQueued: positive(10_000, { env: 'CE_BROKER_WEBHOOKS_MAX_QUEUED', doc: 'deliveries queued or waiting for a retry; beyond it new ones are dead-lettered (`queue_full`)' }),
    // a circuit breaker per subscription
    breaker: Type.Object({
      failures: positive(5, { env: 'CE_BROKER_WEBHOOKS_BREAKER_FAILURES', doc: 'failed attempts in a row (network, timeout, 408, 429, 5xx) that open a subscription\'s circuit' }),
      halfOpenAfterMs: positive(30_000, { env: 'CE_BROKER_WEBHOOKS_BREAKER_HALF_OPEN_AFTER_MS', doc: 'how long an open circuit holds deliveries before one probe goes' })
    }, { additionalProperties: false }),
    lockMs: positive(15_000, {
      env: 'CE_BROKER_WEBHOOKS_LOCK_MS',
      doc: 'with Redis: how long a node holds a delivery without renewing it, in ms; a node that dies mid-delivery is taken over within about twice this'
    }, 1000),
    origin: Type.String({
      default: '',
      ...setting({ env: 'CE_BROKER_WEBHOOKS_ORIGIN', shownDefault: 'the host name', doc: 'the name the broker gives itself in a webhook validation handshake (`WebHook-Request-Origin`); empty: this machine\'s host name' })
    }),
    denyNetworks: Type.Array(Type.String({ pattern: '^[0-9a-fA-F:.]+(/[0-9]{1,3})?$' }), {
      default: ['169.254.0.0/16', 'fd00:ec2::254/128'],
      ...setting({ doc: 'networks (CIDR) no webhook URL may point into; a host name is resolved and checked' })
    }),
    // bounds of a subscription's `filters`, checked when it is registered
    filters: Type.Object({
      maxExpressionLength: Type.Integer({
        minimum: 1,
        maximum: 65_536,
        default: 4096,
        ...setting({ env: 'CE_BROKER_WEBHOOKS_FILTERS_MAX_EXPRESSION_LENGTH', doc: 'characters of one `cesql` filter expression; a longer one is refused (400)' })
      }),
      maxDepth: Type.Integer({
        minimum: 1,
        maximum: 128,
        default: 32,
        ...setting({ env: 'CE_BROKER_WEBHOOKS_FILTERS_MAX_DEPTH', doc: 'levels of `all`/`any`/`not` in a subscription\'s filters, and of nesting within one `cesql` expression (parentheses, `NOT`, unary minus, function calls, `IN` lists); deeper is refused (400)' })
      }),
      maxFilters: Type.Integer({
        minimum: 1,
        maximum: 1024,
        default: 64,
        ...setting({ env: 'CE_BROKER_WEBHOOKS_FILTERS_MAX_FILTERS', doc: 'filters of one subscription, nested ones included; more are refused (400)' })
      })
    }, { additionalProperties: false }),
    subscriptions: Type.Array(subscriptionSchema, {
      default: [],
      ...setting({ doc: 'subscriptions registered at start-up, as `POST /api/webhooks` takes them' })
    })
  }, { additionalProperties: false })
})
