import { availableParallelism, hostname } from 'node:os'
import { readFileSync } from 'node:fs'
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv'
import addFormats from 'ajv-formats'
import proxyaddr from 'proxy-addr'
import { parse as parseYaml } from 'yaml'
import { ConfigError, messageOf } from './errors.js'
import { topicFilterProblem } from './topics.js'
import type { ApiKeyInput } from './http/api-keys.js'

/** pino levels, plus `silent`. */
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'

/** TLS material: paths of PEM files, read once at start-up. */
export interface TlsFiles {
  /** Path of the PEM private key. */
  readonly key: string
  /** Path of the PEM certificate (chain). */
  readonly cert: string
}

/** The whole, validated and frozen broker configuration. */
export interface BrokerConfig {
  readonly mqtt: {
    /** Address of the MQTT/TCP (and MQTT/TLS) listeners. Default `127.0.0.1`. */
    readonly host: string
    /** MQTT/TCP port; 0 picks a free one. Default `1883`. */
    readonly port: number
    /**
     * Every MQTT/TCP connection starts with a PROXY protocol header (v1 or v2) naming the
     * client's address, as a load balancer writes it (HAProxy `send-proxy-v2`); one
     * without is closed. Default `false`.
     */
    readonly proxyProtocol: boolean
    /** MQTT/TLS listener; absent = no TLS listener. */
    readonly tls?: TlsFiles & {
      /** MQTT/TLS port; 0 picks a free one. Default `8883`. */
      readonly port: number
    }
  }
  readonly http: {
    /** Address of the HTTP listener (API, dashboard, MQTT over WebSocket at `/mqtt`). Default `127.0.0.1`. */
    readonly host: string
    /** HTTP port; 0 picks a free one. Default `8080`. */
    readonly port: number
    /** Serve HTTPS and WSS instead of HTTP and WS. */
    readonly tls?: TlsFiles
    /** Serve `/metrics` without an API key once keys are configured. Default `false`. */
    readonly publicMetrics: boolean
    /**
     * Proxies whose `X-Forwarded-For` names the client of HTTP requests and WebSocket
     * MQTT connections: addresses, CIDRs or `loopback`, `linklocal`, `uniquelocal`,
     * comma-separated. Absent = the socket's address, always.
     */
    readonly trustProxy?: string
  }
  /** Redis for persistence and routing between nodes; absent = embedded (memory) mode. */
  readonly redis?: {
    /** `redis://[user:password@]host:port[/db]` or `rediss://` for TLS. */
    readonly url: string
    /** While Redis is unreachable, how long a publish waits, not acked, before its client is disconnected. Default 10000. */
    readonly outageHoldMs?: number
  }
  /** Name of this node in logs, records and `$SYS` topics. Default `<hostname>-<pid>`. */
  readonly nodeId: string
  /** pino level. Default `info`. */
  readonly logLevel: LogLevel
  readonly schemas: {
    /** Folder of JSON Schema files, one per CloudEvent type. Default `./schemas`. */
    readonly dir: string
  }
  readonly validation: {
    /** What happens on a topic no rule matches: `pass` (plain MQTT) or `reject`. Default `pass`. */
    readonly default: 'pass' | 'reject'
    /** Checked in order; the first rule whose `match` filter matches the topic applies. */
    readonly rules: readonly ValidationRule[]
    /** Worker threads that parse and check events; 0 checks on the event loop. Default: one per core beyond the first, at most 4. */
    readonly workers: number
  }
  readonly limits: {
    /** Largest PUBLISH payload in bytes, refused while parsing. Default 262144 (256 KiB). */
    readonly maxPayloadBytes: number
    /** MQTT connections open at once, all transports. Default 10000. */
    readonly maxConnections: number
    /** New connections a second from one address (a bucket of as many). Default 100. */
    readonly connectionsPerSecondPerAddress: number
    /** MQTT connections open at once from one address (an IPv6 /64 counts as one). Default 1000. */
    readonly maxConnectionsPerAddress: number
    /** How long a new connection may take to send its CONNECT, in ms. Default 10000. */
    readonly connectTimeoutMs: number
    /** Levels of a topic or filter. Default 100. */
    readonly maxTopicLevels: number
    /** Bytes of a topic or filter (UTF-8). Default 1024. */
    readonly maxTopicBytes: number
    /** Subscriptions one client holds at once. Default 100. */
    readonly maxSubscriptionsPerClient: number
    /** Longest keepalive a client may ask for, in s; 0 = any (keepalive 0, none, included). Default 0. */
    readonly maxKeepaliveSeconds: number
    /** How long a client that reads nothing may hold up its deliveries before it is disconnected, in ms. Default 60000. */
    readonly drainTimeoutMs: number
    /** QoS 2 publishes of one client waiting for PUBREL. Default 1000. */
    readonly maxInflightInbound: number
    /** Largest HTTP request body in bytes. Default 1048576 (1 MiB). */
    readonly httpBodyBytes: number
    /**
     * Largest packet other than PUBLISH (remaining length, in bytes), refused from its header before
     * its bytes are buffered; PUBLISH is bounded by `maxPayloadBytes`. Default 327680 (320 KiB).
     */
    readonly maxPacketBytes: number
    /** Largest packet before the client's CONNECT has been accepted (the CONNECT itself included), in bytes. Default 65536. */
    readonly maxConnectPacketBytes: number
    /** Topic filters in one SUBSCRIBE or UNSUBSCRIBE; beyond it the client is disconnected. Default 100. */
    readonly maxFiltersPerPacket: number
    /** Messages waiting to be written to one client; beyond it QoS 0 is dropped, QoS 1/2 kept in a persistent session or the client disconnected. Default 1000. */
    readonly maxQueuedMessages: number
    /** Bytes (topic + payload) waiting to be written to one client, with the same consequences. Default 8388608 (8 MiB). */
    readonly maxQueuedBytes: number
    /**
     * How long a client's oldest unwritten message may hold up publishers before the client counts as slow, in ms: from
     * then on nobody waits for it, and its messages go to its bounded queue until it has caught up. Default 500.
     */
    readonly slowConsumerMs: number
    /** Log lines one client can trigger (refusals, rejected events): at most one per client per this interval, with the number suppressed, in ms. Default 10000. */
    readonly clientLogIntervalMs: number
  }
  readonly deadLetters: {
    /** Dead letters kept in the store; the oldest are evicted beyond it. Default 10000. */
    readonly maxEntries: number
  }
  readonly idempotency: {
    /** Drop a second copy of an event (same `source` + `id`) on validated topics. Default true. */
    readonly enabled: boolean
    /** How long an accepted event's key is remembered, in ms. Default 86400000 (24 h). */
    readonly windowMs: number
    /** Keys the memory store keeps; the least recently seen are forgotten beyond it. Default 100000. */
    readonly maxEntries: number
  }
  readonly audit: {
    /** Write an audit record for every publish on a validated topic. Default true. */
    readonly enabled: boolean
    /** Publish each record on `$audit/<topic>`. Default true. */
    readonly topic: boolean
    /** JSON-lines file the records are appended to; absent: no file. */
    readonly file?: string
    /** Put the event itself in each record (`payload`). Default true. */
    readonly payload: boolean
    /** Paths into the event (`data.email`, `data.guests.*.email`) whose values are replaced by "[redacted]". */
    readonly redact: readonly string[]
    /** With Redis: the stream records are added to, trimmed to about `maxLen` entries. */
    readonly stream: {
      readonly key: string
      readonly maxLen: number
    }
    /** Embedded: accepted events each node keeps in memory for `GET /api/mqtt/messages/:topic` (with Redis the stream is read). */
    readonly recent: {
      /** Default 1000. */
      readonly maxEntries: number
      /** Their bytes (records carry the payload): the oldest go first beyond it. Default 16777216 (16 MiB). */
      readonly maxBytes: number
    }
  }
  readonly auth: {
    /**
     * Let clients without credentials in, with the role `anonymous`, even though users
     * or JWTs are configured. Without users and JWTs everybody is anonymous and may do
     * anything but publish to `$` topics. Default false.
     */
    readonly allowAnonymous: boolean
    /** MQTT users: a password hash from `ce-broker hash-password`, and roles for the ACL. */
    readonly users: readonly AuthUser[]
    /** Publish and subscribe filters granted per role or user (`%u` user name, `%c` client id). */
    readonly acl: readonly AclRuleInput[]
    /** JWTs as MQTT passwords: verified with an HS256 `secret` or the public keys of a `jwksFile`. */
    readonly jwt?: AuthJwt
    /** Failed logins from one address within `windowMs` beyond which its CONNECTs are refused unchecked until the window ends. */
    readonly loginFailures: { readonly max: number, readonly windowMs: number }
    /** Bearer keys of the HTTP API (hashes from `ce-broker new-api-key`) and their scopes; once any exists, the API needs one. */
    readonly apiKeys: readonly ApiKeyInput[]
  }
  readonly webhooks: {
    /** What every subscription gets unless it says otherwise. */
    readonly defaults: {
      readonly retry: { readonly maxAttempts: number, readonly initialDelayMs: number, readonly maxDelayMs: number }
      /** Per request, in ms. Default 10000. */
      readonly timeoutMs: number
      /** Requests in flight per subscription. Default 8. */
      readonly concurrency: number
    }
    /** Deliveries queued or waiting for a retry; beyond it new ones are dead-lettered (`queue_full`). Default 10000. */
    readonly maxQueued: number
    /** Circuit breaker per subscription: opens after `failures` failed attempts in a row, probes after `halfOpenAfterMs`. */
    readonly breaker: { readonly failures: number, readonly halfOpenAfterMs: number }
    /** With Redis: how long a node holds a delivery without renewing it; a node that dies mid-delivery is taken over within about twice this. Default 15000. */
    readonly lockMs: number
    /** Networks no webhook URL may point into (CIDR). Default link-local and cloud metadata addresses. */
    readonly denyNetworks: readonly string[]
    /** Subscriptions registered at start-up. */
    readonly subscriptions: readonly WebhookSubscriptionInput[]
  }
}

/** An MQTT user (PRODUCT §6). */
export interface AuthUser {
  readonly username: string
  /** `$scrypt$…` hash printed by `ce-broker hash-password`. */
  readonly password: string
  readonly roles: readonly string[]
}

/** An ACL rule: for a `role` or a `user`, the filters it may publish to and subscribe to, and those it may not. */
export interface AclRuleInput {
  readonly role?: string
  readonly user?: string
  readonly publish: readonly string[]
  readonly subscribe: readonly string[]
  /** Filters refused even where a grant covers them (a deny wins over every grant of the client's rules). */
  readonly deny?: { readonly publish?: readonly string[], readonly subscribe?: readonly string[] }
}

/** How JWT passwords are checked; the token's claims name the user and its roles. */
export interface AuthJwt {
  /** Shared HS256 secret (at least 32 characters). */
  readonly secret?: string
  /** JSON Web Key Set file with the public keys tokens are signed with. */
  readonly jwksFile?: string
  readonly issuer?: string
  readonly audience?: string
  /** Claim holding the user name. Default `sub`. */
  readonly usernameClaim?: string
  /** Claim holding the roles (an array of strings, or one string). Default `roles`. */
  readonly rolesClaim?: string
}

/** A webhook subscription as registered (PRODUCT §4): in the config, and the body of `POST /api/webhooks`. */
export interface WebhookSubscriptionInput {
  readonly service_id: string
  readonly webhook_url: string
  /** MQTT filters or the dotted form (`albergue.v1.booking.*`). */
  readonly topic_filters: readonly string[]
  readonly secret?: string
  /** `binary` (default) or `structured` CloudEvents HTTP binding. */
  readonly mode?: 'binary' | 'structured'
  /** Overrides of `webhooks.defaults.retry`. */
  readonly retry?: { readonly maxAttempts?: number, readonly initialDelayMs?: number, readonly maxDelayMs?: number }
  readonly timeoutMs?: number
}

/** A validation rule: which topics it covers and how their publishes are checked. */
export interface ValidationRule {
  /** MQTT topic filter (`+`, `#`). */
  readonly match: string
  /** Payloads must be CloudEvents 1.0 in structured JSON mode whose `type` maps to the topic. Default true. */
  readonly cloudevents: boolean
  /** `required`: a schema must be registered for the type; `optional`: checked when one is; `none`. Default `required`. */
  readonly schema: 'required' | 'optional' | 'none'
  /** `dlq`: acked and dead-lettered; `disconnect`: dead-lettered and the publisher disconnected. Default `dlq`. */
  readonly onInvalid: 'dlq' | 'disconnect'
}

/** A partial configuration as a caller or a config file gives it; `DEFAULTS` fill the rest. */
export type ConfigInput = DeepPartial<BrokerConfig>

/** Recursively optional and writable: the shape of a config layer. */
export type DeepPartial<T> = {
  -readonly [K in keyof T]?: T[K] extends ReadonlyArray<infer U> ? ReadonlyArray<DeepPartial<U>> : T[K] extends object ? DeepPartial<T[K]> : T[K]
}

/** Defaults: one embedded node on localhost, as Mosquitto 2 does until told otherwise. */
export function defaults (): BrokerConfig {
  return {
    mqtt: { host: '127.0.0.1', port: 1883, proxyProtocol: false },
    http: { host: '127.0.0.1', port: 8080, publicMetrics: false },
    nodeId: `${hostname()}-${process.pid}`,
    logLevel: 'info',
    schemas: { dir: './schemas' },
    validation: {
      default: 'pass',
      rules: [{ match: 'albergue/#', cloudevents: true, schema: 'required', onInvalid: 'dlq' }],
      workers: Math.min(Math.max(availableParallelism() - 1, 0), 4)
    },
    limits: {
      maxPayloadBytes: 256 * 1024,
      maxConnections: 10_000,
      connectionsPerSecondPerAddress: 100,
      maxConnectionsPerAddress: 1000,
      connectTimeoutMs: 10_000,
      maxTopicLevels: 100,
      maxTopicBytes: 1024,
      maxSubscriptionsPerClient: 100,
      maxKeepaliveSeconds: 0,
      drainTimeoutMs: 60_000,
      maxInflightInbound: 1000,
      httpBodyBytes: 1024 * 1024,
      maxPacketBytes: 320 * 1024,
      maxConnectPacketBytes: 64 * 1024,
      maxFiltersPerPacket: 100,
      maxQueuedMessages: 1000,
      maxQueuedBytes: 8 * 1024 * 1024,
      slowConsumerMs: 500,
      clientLogIntervalMs: 10_000
    },
    deadLetters: { maxEntries: 10_000 },
    idempotency: { enabled: true, windowMs: 24 * 60 * 60 * 1000, maxEntries: 100_000 },
    audit: { enabled: true, topic: true, payload: true, redact: [], stream: { key: 'ce-broker:audit', maxLen: 1_000_000 }, recent: { maxEntries: 1000, maxBytes: 16 * 1024 * 1024 } },
    auth: { allowAnonymous: false, users: [], acl: [], loginFailures: { max: 10, windowMs: 60_000 }, apiKeys: [] },
    webhooks: {
      defaults: { retry: { maxAttempts: 8, initialDelayMs: 1000, maxDelayMs: 300_000 }, timeoutMs: 10_000, concurrency: 8 },
      maxQueued: 10_000,
      breaker: { failures: 5, halfOpenAfterMs: 30_000 },
      lockMs: 15_000,
      denyNetworks: ['169.254.0.0/16', 'fd00:ec2::254/128'],
      subscriptions: []
    }
  }
}

/** How one setting is reached from outside: its key path(s), environment variable and CLI flag. */
export interface OptionSpec {
  /** Key paths this option sets (`--host` sets two). */
  readonly paths: readonly string[]
  readonly env: `CE_BROKER_${string}`
  readonly flag?: `--${string}`
  /** Shown in `--help` and the README. */
  readonly doc: string
  /** Shown in `--help` and the README. */
  readonly default: string
}

/** Every setting reachable from the environment or the command line. The README's table lists the same. */
export const OPTIONS: readonly OptionSpec[] = [
  { paths: ['mqtt.host', 'http.host'], env: 'CE_BROKER_HOST', flag: '--host', default: '127.0.0.1', doc: 'address of every listener' },
  { paths: ['mqtt.host'], env: 'CE_BROKER_MQTT_HOST', default: '127.0.0.1', doc: 'address of the MQTT/TCP and MQTT/TLS listeners' },
  { paths: ['mqtt.port'], env: 'CE_BROKER_MQTT_PORT', flag: '--mqtt-port', default: '1883', doc: 'MQTT/TCP port (0 = any free port)' },
  { paths: ['mqtt.tls.port'], env: 'CE_BROKER_MQTT_TLS_PORT', flag: '--mqtt-tls-port', default: '8883', doc: 'MQTT/TLS port, used when mqtt.tls.key and mqtt.tls.cert are set' },
  { paths: ['mqtt.tls.key'], env: 'CE_BROKER_MQTT_TLS_KEY', default: '(none)', doc: 'PEM private key file of the MQTT/TLS listener' },
  { paths: ['mqtt.tls.cert'], env: 'CE_BROKER_MQTT_TLS_CERT', default: '(none)', doc: 'PEM certificate file of the MQTT/TLS listener' },
  { paths: ['http.host'], env: 'CE_BROKER_HTTP_HOST', default: '127.0.0.1', doc: 'address of the HTTP listener' },
  { paths: ['http.port'], env: 'CE_BROKER_HTTP_PORT', flag: '--http-port', default: '8080', doc: 'HTTP port: API, dashboard, MQTT over WebSocket at /mqtt (0 = any free port)' },
  { paths: ['http.tls.key'], env: 'CE_BROKER_HTTP_TLS_KEY', default: '(none)', doc: 'PEM private key file: the HTTP port serves HTTPS and WSS' },
  { paths: ['http.tls.cert'], env: 'CE_BROKER_HTTP_TLS_CERT', default: '(none)', doc: 'PEM certificate file: the HTTP port serves HTTPS and WSS' },
  { paths: ['mqtt.proxyProtocol'], env: 'CE_BROKER_MQTT_PROXY_PROTOCOL', default: 'false', doc: 'MQTT/TCP connections start with a PROXY protocol header (v1 or v2) naming the client, as HAProxy send-proxy-v2 writes it' },
  { paths: ['http.trustProxy'], env: 'CE_BROKER_HTTP_TRUST_PROXY', default: '(none)', doc: 'proxies whose X-Forwarded-For names the client of HTTP and WebSocket connections: addresses, CIDRs, loopback, linklocal or uniquelocal, comma-separated' },
  { paths: ['http.publicMetrics'], env: 'CE_BROKER_HTTP_PUBLIC_METRICS', default: 'false', doc: 'serve /metrics without an API key' },
  { paths: ['redis.url'], env: 'CE_BROKER_REDIS_URL', flag: '--redis', default: '(none: embedded)', doc: 'redis:// or rediss:// URL; switches persistence and routing to Redis' },
  { paths: ['redis.outageHoldMs'], env: 'CE_BROKER_REDIS_OUTAGE_HOLD_MS', default: '10000', doc: 'while Redis is unreachable, how long a publish waits (not acked) before its client is disconnected, in ms' },
  { paths: ['nodeId'], env: 'CE_BROKER_NODE_ID', flag: '--node-id', default: '<hostname>-<pid>', doc: 'name of this node in logs, records and $SYS topics' },
  { paths: ['logLevel'], env: 'CE_BROKER_LOG_LEVEL', flag: '--log-level', default: 'info', doc: 'fatal, error, warn, info, debug, trace or silent' },
  { paths: ['schemas.dir'], env: 'CE_BROKER_SCHEMAS_DIR', flag: '--schemas', default: './schemas', doc: 'folder of JSON Schema files' },
  { paths: ['validation.default'], env: 'CE_BROKER_VALIDATION_DEFAULT', default: 'pass', doc: 'pass or reject publishes on topics no validation rule matches' },
  { paths: ['validation.workers'], env: 'CE_BROKER_VALIDATION_WORKERS', flag: '--validation-workers', default: 'cores - 1, at most 4', doc: 'worker threads that parse and check events (0 = on the event loop)' },
  { paths: ['limits.maxPayloadBytes'], env: 'CE_BROKER_LIMITS_MAX_PAYLOAD_BYTES', default: '262144', doc: 'largest PUBLISH payload, refused while parsing' },
  { paths: ['limits.maxConnections'], env: 'CE_BROKER_LIMITS_MAX_CONNECTIONS', default: '10000', doc: 'MQTT connections open at once, all transports; beyond it new sockets are closed at once' },
  { paths: ['limits.connectionsPerSecondPerAddress'], env: 'CE_BROKER_LIMITS_CONNECTIONS_PER_SECOND_PER_ADDRESS', default: '100', doc: 'new MQTT connections a second from one address (a burst of as many); beyond it sockets are closed at once' },
  { paths: ['limits.maxConnectionsPerAddress'], env: 'CE_BROKER_LIMITS_MAX_CONNECTIONS_PER_ADDRESS', default: '1000', doc: 'MQTT connections open at once from one address (an IPv6 /64 counts as one); beyond it new sockets are closed at once' },
  { paths: ['limits.connectTimeoutMs'], env: 'CE_BROKER_LIMITS_CONNECT_TIMEOUT_MS', default: '10000', doc: 'how long a new connection may take to send its CONNECT before it is closed' },
  { paths: ['limits.maxTopicLevels'], env: 'CE_BROKER_LIMITS_MAX_TOPIC_LEVELS', default: '100', doc: 'levels of a topic or filter; a publish beyond it disconnects, a subscription gets SUBACK 0x80' },
  { paths: ['limits.maxTopicBytes'], env: 'CE_BROKER_LIMITS_MAX_TOPIC_BYTES', default: '1024', doc: 'bytes of a topic or filter; a publish beyond it disconnects, a subscription gets SUBACK 0x80' },
  { paths: ['limits.maxSubscriptionsPerClient'], env: 'CE_BROKER_LIMITS_MAX_SUBSCRIPTIONS_PER_CLIENT', default: '100', doc: 'subscriptions one client holds; beyond it SUBACK 0x80' },
  { paths: ['limits.maxKeepaliveSeconds'], env: 'CE_BROKER_LIMITS_MAX_KEEPALIVE_SECONDS', default: '0', doc: 'longest keepalive a client may ask for (CONNACK 6 beyond it, and for keepalive 0); 0 = any' },
  { paths: ['limits.drainTimeoutMs'], env: 'CE_BROKER_LIMITS_DRAIN_TIMEOUT_MS', default: '60000', doc: 'how long a client that does not read may hold up its deliveries before it is disconnected (0 = forever)' },
  { paths: ['limits.maxInflightInbound'], env: 'CE_BROKER_LIMITS_MAX_INFLIGHT_INBOUND', default: '1000', doc: 'QoS 2 publishes of one client waiting for PUBREL; beyond it the client is disconnected' },
  { paths: ['limits.httpBodyBytes'], env: 'CE_BROKER_LIMITS_HTTP_BODY_BYTES', default: '1048576', doc: 'largest HTTP request body (413 beyond it)' },
  { paths: ['limits.maxPacketBytes'], env: 'CE_BROKER_LIMITS_MAX_PACKET_BYTES', default: '327680', doc: 'largest MQTT packet other than PUBLISH, refused from its header before it is buffered' },
  { paths: ['limits.maxConnectPacketBytes'], env: 'CE_BROKER_LIMITS_MAX_CONNECT_PACKET_BYTES', default: '65536', doc: 'largest MQTT packet before the CONNECT is accepted, the CONNECT included' },
  { paths: ['limits.maxFiltersPerPacket'], env: 'CE_BROKER_LIMITS_MAX_FILTERS_PER_PACKET', default: '100', doc: 'topic filters in one SUBSCRIBE or UNSUBSCRIBE; beyond it the client is disconnected' },
  { paths: ['limits.maxQueuedMessages'], env: 'CE_BROKER_LIMITS_MAX_QUEUED_MESSAGES', default: '1000', doc: 'messages waiting to be written to one client; beyond it QoS 0 is dropped, QoS 1/2 stays in a persistent session or a clean client is disconnected' },
  { paths: ['limits.maxQueuedBytes'], env: 'CE_BROKER_LIMITS_MAX_QUEUED_BYTES', default: '8388608', doc: 'bytes (topic + payload) waiting to be written to one client, with the same consequences' },
  { paths: ['limits.slowConsumerMs'], env: 'CE_BROKER_LIMITS_SLOW_CONSUMER_MS', default: '500', doc: 'how long a client\'s oldest unwritten message may hold up publishers before the client counts as slow and its messages go to its bounded queue, in ms' },
  { paths: ['limits.clientLogIntervalMs'], env: 'CE_BROKER_LIMITS_CLIENT_LOG_INTERVAL_MS', default: '10000', doc: 'log lines a client can trigger: at most one per client per interval, with the number suppressed' },
  { paths: ['deadLetters.maxEntries'], env: 'CE_BROKER_DEAD_LETTERS_MAX_ENTRIES', default: '10000', doc: 'dead letters kept; the oldest are evicted' },
  { paths: ['idempotency.enabled'], env: 'CE_BROKER_IDEMPOTENCY_ENABLED', default: 'true', doc: 'drop a second copy of an event (same source + id) on validated topics' },
  { paths: ['idempotency.windowMs'], env: 'CE_BROKER_IDEMPOTENCY_WINDOW_MS', default: '86400000', doc: 'how long an accepted event is remembered, in ms (24 h)' },
  { paths: ['idempotency.maxEntries'], env: 'CE_BROKER_IDEMPOTENCY_MAX_ENTRIES', default: '100000', doc: 'events the memory store remembers; the least recently seen are forgotten beyond it' },
  { paths: ['audit.enabled'], env: 'CE_BROKER_AUDIT_ENABLED', default: 'true', doc: 'write an audit record for every publish on a validated topic' },
  { paths: ['audit.topic'], env: 'CE_BROKER_AUDIT_TOPIC', default: 'true', doc: 'publish each audit record on $audit/<topic> (the live mirror; the logs are written either way)' },
  { paths: ['audit.file'], env: 'CE_BROKER_AUDIT_FILE', flag: '--audit-file', default: '(none)', doc: 'JSON-lines file the audit records are appended to' },
  { paths: ['audit.payload'], env: 'CE_BROKER_AUDIT_PAYLOAD', default: 'true', doc: 'put the event itself in each audit record' },
  { paths: ['audit.stream.key'], env: 'CE_BROKER_AUDIT_STREAM_KEY', default: 'ce-broker:audit', doc: 'with Redis: the stream audit records are added to' },
  { paths: ['audit.recent.maxEntries'], env: 'CE_BROKER_AUDIT_RECENT_MAX_ENTRIES', default: '1000', doc: 'embedded: accepted events each node keeps in memory for GET /api/mqtt/messages/:topic; with Redis the audit stream is read instead' },
  { paths: ['audit.recent.maxBytes'], env: 'CE_BROKER_AUDIT_RECENT_MAX_BYTES', default: '16777216', doc: 'embedded: the bytes of those records (they carry the payload); the oldest go first beyond it' },
  { paths: ['audit.stream.maxLen'], env: 'CE_BROKER_AUDIT_STREAM_MAX_LEN', default: '1000000', doc: 'with Redis: the audit stream is trimmed to about this many entries' },
  { paths: ['auth.allowAnonymous'], env: 'CE_BROKER_AUTH_ALLOW_ANONYMOUS', default: 'false', doc: 'let clients without credentials in (role anonymous) although users or JWTs are configured' },
  { paths: ['auth.jwt.secret'], env: 'CE_BROKER_AUTH_JWT_SECRET', default: '(none)', doc: 'HS256 secret JWT passwords are verified with (at least 32 characters)' },
  { paths: ['auth.jwt.jwksFile'], env: 'CE_BROKER_AUTH_JWT_JWKS_FILE', default: '(none)', doc: 'JSON Web Key Set file JWT passwords are verified with' },
  { paths: ['auth.loginFailures.max'], env: 'CE_BROKER_AUTH_LOGIN_FAILURES_MAX', default: '10', doc: 'failed logins from one address within the window before its CONNECTs are refused unchecked' },
  { paths: ['auth.loginFailures.windowMs'], env: 'CE_BROKER_AUTH_LOGIN_FAILURES_WINDOW_MS', default: '60000', doc: 'the window of auth.loginFailures.max, in ms, from the first failure' },
  { paths: ['webhooks.defaults.retry.maxAttempts'], env: 'CE_BROKER_WEBHOOKS_MAX_ATTEMPTS', default: '8', doc: 'attempts per webhook delivery before it is dead-lettered' },
  { paths: ['webhooks.defaults.retry.initialDelayMs'], env: 'CE_BROKER_WEBHOOKS_INITIAL_DELAY_MS', default: '1000', doc: 'backoff before the first retry, in ms (doubling, full jitter)' },
  { paths: ['webhooks.defaults.retry.maxDelayMs'], env: 'CE_BROKER_WEBHOOKS_MAX_DELAY_MS', default: '300000', doc: 'longest backoff between attempts, in ms (Retry-After included)' },
  { paths: ['webhooks.defaults.timeoutMs'], env: 'CE_BROKER_WEBHOOKS_TIMEOUT_MS', default: '10000', doc: 'timeout of one webhook request, in ms' },
  { paths: ['webhooks.defaults.concurrency'], env: 'CE_BROKER_WEBHOOKS_CONCURRENCY', default: '8', doc: 'webhook requests in flight per subscription' },
  { paths: ['webhooks.breaker.failures'], env: 'CE_BROKER_WEBHOOKS_BREAKER_FAILURES', default: '5', doc: 'failed attempts in a row that open a subscription\'s circuit' },
  { paths: ['webhooks.breaker.halfOpenAfterMs'], env: 'CE_BROKER_WEBHOOKS_BREAKER_HALF_OPEN_AFTER_MS', default: '30000', doc: 'how long an open circuit holds deliveries before one probe, in ms' },
  { paths: ['webhooks.maxQueued'], env: 'CE_BROKER_WEBHOOKS_MAX_QUEUED', default: '10000', doc: 'webhook deliveries queued or waiting for a retry; beyond it they are dead-lettered (queue_full)' },
  { paths: ['webhooks.lockMs'], env: 'CE_BROKER_WEBHOOKS_LOCK_MS', default: '15000', doc: 'with Redis: how long a node holds a webhook delivery without renewing it, in ms; a node that dies mid-delivery is taken over within about twice this' }
]

const port = { type: 'integer', minimum: 0, maximum: 65535 }
/** A webhook retry policy, in the config and in a subscription. */
const retryProperties = {
  maxAttempts: { type: 'integer', minimum: 1, maximum: 100 },
  initialDelayMs: { type: 'integer', minimum: 0 },
  maxDelayMs: { type: 'integer', minimum: 0 }
}
const nonEmpty = { type: 'string', minLength: 1 }

/** JSON Schema of the config; `partial` drops `required` so each layer can be checked on its own. */
function configSchema (partial: boolean): object {
  const req = (keys: string[]): { required?: string[] } => partial ? {} : { required: keys }
  const strict = (properties: object, required: string[] = []): object =>
    ({ type: 'object', additionalProperties: false, properties, ...req(required) })
  const tlsFiles = { key: nonEmpty, cert: nonEmpty }
  return strict({
    mqtt: strict({ host: nonEmpty, port, proxyProtocol: { type: 'boolean' }, tls: strict({ port, ...tlsFiles }, ['port', 'key', 'cert']) }, ['host', 'port', 'proxyProtocol']),
    http: strict({ host: nonEmpty, port, tls: strict(tlsFiles, ['key', 'cert']), publicMetrics: { type: 'boolean' }, trustProxy: nonEmpty }, ['host', 'port', 'publicMetrics']),
    redis: strict({ url: { type: 'string', format: 'uri', pattern: '^rediss?://' }, outageHoldMs: { type: 'integer', minimum: 0 } }, ['url']),
    nodeId: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,64}$' },
    logLevel: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] },
    schemas: strict({ dir: nonEmpty }, ['dir']),
    validation: strict({
      default: { enum: ['pass', 'reject'] },
      rules: {
        type: 'array',
        items: strict({
          match: { type: 'string', minLength: 1 },
          cloudevents: { type: 'boolean' },
          schema: { enum: ['required', 'optional', 'none'] },
          onInvalid: { enum: ['dlq', 'disconnect'] }
        }, ['match'])
      },
      workers: { type: 'integer', minimum: 0, maximum: 64 }
    }, ['default', 'rules', 'workers']),
    limits: strict({
      maxPayloadBytes: { type: 'integer', minimum: 1, maximum: 268435455 },
      maxConnections: { type: 'integer', minimum: 1 },
      connectionsPerSecondPerAddress: { type: 'integer', minimum: 1 },
      maxConnectionsPerAddress: { type: 'integer', minimum: 1 },
      connectTimeoutMs: { type: 'integer', minimum: 100 },
      maxTopicLevels: { type: 'integer', minimum: 1, maximum: 100 },
      maxTopicBytes: { type: 'integer', minimum: 1, maximum: 65535 },
      maxSubscriptionsPerClient: { type: 'integer', minimum: 1 },
      maxKeepaliveSeconds: { type: 'integer', minimum: 0, maximum: 65535 },
      drainTimeoutMs: { type: 'integer', minimum: 0 },
      maxInflightInbound: { type: 'integer', minimum: 1 },
      httpBodyBytes: { type: 'integer', minimum: 1024 },
      maxPacketBytes: { type: 'integer', minimum: 64, maximum: 268435455 },
      maxConnectPacketBytes: { type: 'integer', minimum: 64, maximum: 268435455 },
      maxFiltersPerPacket: { type: 'integer', minimum: 1 },
      maxQueuedMessages: { type: 'integer', minimum: 1 },
      maxQueuedBytes: { type: 'integer', minimum: 1024 },
      slowConsumerMs: { type: 'integer', minimum: 20 },
      clientLogIntervalMs: { type: 'integer', minimum: 0 }
    }, ['maxPayloadBytes', 'maxConnections', 'connectionsPerSecondPerAddress', 'maxConnectionsPerAddress', 'connectTimeoutMs', 'maxTopicLevels', 'maxTopicBytes', 'maxSubscriptionsPerClient', 'maxKeepaliveSeconds', 'drainTimeoutMs', 'maxInflightInbound', 'httpBodyBytes', 'maxPacketBytes', 'maxConnectPacketBytes', 'maxFiltersPerPacket', 'maxQueuedMessages', 'maxQueuedBytes', 'slowConsumerMs', 'clientLogIntervalMs']),
    deadLetters: strict({ maxEntries: { type: 'integer', minimum: 1 } }, ['maxEntries']),
    idempotency: strict({
      enabled: { type: 'boolean' },
      windowMs: { type: 'integer', minimum: 1 },
      maxEntries: { type: 'integer', minimum: 1 }
    }, ['enabled', 'windowMs', 'maxEntries']),
    audit: strict({
      enabled: { type: 'boolean' },
      topic: { type: 'boolean' },
      file: nonEmpty,
      payload: { type: 'boolean' },
      redact: { type: 'array', items: { type: 'string', pattern: '^[^.]+(\\.[^.]+)*$' } },
      stream: strict({ key: nonEmpty, maxLen: { type: 'integer', minimum: 1 } }, ['key', 'maxLen']),
      recent: strict({ maxEntries: { type: 'integer', minimum: 1 }, maxBytes: { type: 'integer', minimum: 1024 } }, ['maxEntries', 'maxBytes'])
    }, ['enabled', 'topic', 'payload', 'redact', 'stream', 'recent']),
    auth: strict({
      allowAnonymous: { type: 'boolean' },
      users: {
        type: 'array',
        items: strict({
          username: nonEmpty,
          password: nonEmpty,
          roles: { type: 'array', items: nonEmpty }
        }, ['username', 'password', 'roles'])
      },
      acl: {
        type: 'array',
        items: strict({
          role: nonEmpty,
          user: nonEmpty,
          publish: { type: 'array', items: nonEmpty },
          subscribe: { type: 'array', items: nonEmpty },
          deny: strict({ publish: { type: 'array', items: nonEmpty }, subscribe: { type: 'array', items: nonEmpty } })
        }, ['publish', 'subscribe'])
      },
      jwt: strict({
        secret: { type: 'string', minLength: 32 },
        jwksFile: nonEmpty,
        issuer: nonEmpty,
        audience: nonEmpty,
        usernameClaim: nonEmpty,
        rolesClaim: nonEmpty
      }),
      loginFailures: strict({ max: { type: 'integer', minimum: 1 }, windowMs: { type: 'integer', minimum: 1 } }, ['max', 'windowMs']),
      apiKeys: {
        type: 'array',
        items: strict({
          id: nonEmpty,
          key: { type: 'string', pattern: '^\\$sha256\\$[A-Za-z0-9_-]{43}$' },
          scopes: { type: 'array', minItems: 1, items: { enum: ['publish', 'read', 'admin'] } }
        }, ['id', 'key', 'scopes'])
      }
    }, ['allowAnonymous', 'users', 'acl', 'loginFailures', 'apiKeys']),
    webhooks: strict({
      defaults: strict({
        retry: strict(retryProperties, ['maxAttempts', 'initialDelayMs', 'maxDelayMs']),
        timeoutMs: { type: 'integer', minimum: 1 },
        concurrency: { type: 'integer', minimum: 1 }
      }, ['retry', 'timeoutMs', 'concurrency']),
      maxQueued: { type: 'integer', minimum: 1 },
      breaker: strict({ failures: { type: 'integer', minimum: 1 }, halfOpenAfterMs: { type: 'integer', minimum: 1 } }, ['failures', 'halfOpenAfterMs']),
      lockMs: { type: 'integer', minimum: 1000 },
      denyNetworks: { type: 'array', items: { type: 'string', pattern: '^[0-9a-fA-F:.]+(/[0-9]{1,3})?$' } },
      subscriptions: {
        type: 'array',
        items: strict({
          service_id: nonEmpty,
          webhook_url: { type: 'string', format: 'uri' },
          topic_filters: { type: 'array', minItems: 1, items: nonEmpty },
          secret: { type: 'string', minLength: 16 },
          mode: { enum: ['binary', 'structured'] },
          retry: strict(retryProperties),
          timeoutMs: { type: 'integer', minimum: 1 }
        }, ['service_id', 'webhook_url', 'topic_filters'])
      }
    }, ['defaults', 'maxQueued', 'breaker', 'lockMs', 'denyNetworks', 'subscriptions'])
  }, ['mqtt', 'http', 'nodeId', 'logLevel', 'schemas', 'validation', 'limits', 'deadLetters', 'idempotency', 'audit', 'auth', 'webhooks'])
}

/** The compiled validators; built once per `loadConfig` call site that needs them. */
interface Validators {
  readonly layer: ValidateFunction
  readonly stringLayer: ValidateFunction
  readonly whole: ValidateFunction
}

function compileValidators (): Validators {
  const make = (coerceTypes: boolean): Ajv => {
    const ajv = new Ajv({ allErrors: false, coerceTypes, strict: true, verbose: true })
    addFormats.default(ajv)
    return ajv
  }
  const exact = make(false)
  return {
    layer: exact.compile(configSchema(true)),
    // env variables and flags arrive as strings: "1883" must become 1883, "true" true
    stringLayer: make(true).compile(configSchema(true)),
    whole: exact.compile(configSchema(false))
  }
}

/** Where a layer comes from, for error messages, and how its keys map back to env names or flags. */
interface Layer {
  readonly data: Record<string, unknown>
  readonly source: string
  readonly coerce: boolean
  /** key path → the env variable or flag that set it, to name it in errors. */
  readonly origin?: ReadonlyMap<string, string>
}

/** Options for `loadConfig`; each layer is optional. */
export interface LoadConfigOptions {
  /** Config file contents already parsed (see `readConfigFile`), and its name for messages. */
  readonly file?: { readonly name: string, readonly data: unknown }
  /** CLI flag values by flag name without dashes (`mqtt-port`), as `util.parseArgs` returns them. */
  readonly flags?: Readonly<Record<string, string | boolean | ReadonlyArray<string | boolean> | undefined>>
  /** Environment; only `CE_BROKER_*` variables are read. */
  readonly env?: Readonly<Record<string, string | undefined>>
}

/**
 * Merge `DEFAULTS` < `input` (programmatic) < config file < CLI flags < `CE_BROKER_*` env
 * (PRODUCT §1: flags override the file, environment variables override both),
 * validate every layer and the result, and return it deep-frozen.
 * Throws a `ConfigError` naming the source, the key path and the value.
 */
export function loadConfig (input: unknown = {}, options: LoadConfigOptions = {}): BrokerConfig {
  const validators = compileValidators()
  const layers: Layer[] = [{ data: asObject(input, 'createBroker() options'), source: 'createBroker() options', coerce: false }]
  if (options.file !== undefined) {
    layers.push({ data: asObject(options.file.data, `config file ${options.file.name}`), source: `config file ${options.file.name}`, coerce: false })
  }
  if (options.flags !== undefined) layers.push(fromFlags(options.flags))
  if (options.env !== undefined) layers.push(fromEnv(options.env))

  let merged: Record<string, unknown> = { ...defaults() }
  for (const layer of layers) {
    const validate = layer.coerce ? validators.stringLayer : validators.layer
    if (!validate(layer.data)) throw layerError(layer, validate.errors)
    merged = deepMerge(merged, layer.data)
  }
  // A TLS listener without a port takes the MQTT over TLS default, 8883.
  const mqtt = merged.mqtt
  if (isRecord(mqtt) && isRecord(mqtt.tls) && mqtt.tls.port === undefined) {
    merged = deepMerge(merged, { mqtt: { tls: { port: 8883 } } })
  }
  if (!validators.whole(merged)) throw layerError({ data: merged, source: 'config', coerce: false }, validators.whole.errors)
  merged = deepMerge(merged, { validation: { rules: normalizeRules(merged) } })
  checkTrustProxy(merged)
  // the whole-config schema above is the BrokerConfig interface written as JSON Schema
  return deepFreeze(merged) as unknown as BrokerConfig
}

/** `http.trustProxy` must be what proxy-addr (and fastify) understand. */
function checkTrustProxy (config: Record<string, unknown>): void {
  const http = config.http
  const value = isRecord(http) ? http.trustProxy : undefined
  if (typeof value !== 'string') return
  try {
    proxyaddr.compile(value.split(/ *, */))
  } catch (err: unknown) {
    throw new ConfigError('config', 'http.trustProxy', `${messageOf(err)}, got ${JSON.stringify(value)}`, { cause: err })
  }
}

/** Fill each rule's defaults, and refuse what cannot work, naming the rule. */
function normalizeRules (config: Record<string, unknown>): ValidationRule[] {
  const validation = config.validation
  const rules: unknown = isRecord(validation) ? validation.rules : []
  if (!Array.isArray(rules)) return []
  return rules.map((raw: unknown, index: number): ValidationRule => {
    const rule = isRecord(raw) ? raw : {}
    const path = `validation.rules.${index}`
    const match = String(rule.match)
    const problem = topicFilterProblem(match)
    if (problem !== undefined) throw new ConfigError('config', `${path}.match`, `${problem}, got ${JSON.stringify(match)}`)
    const cloudevents = rule.cloudevents !== false
    const schema = rule.schema === 'optional' || rule.schema === 'none' ? rule.schema : 'required'
    if (!cloudevents && schema !== 'none') {
      throw new ConfigError('config', `${path}.schema`, `must be "none" when cloudevents is false (schemas check a CloudEvent's data), got ${JSON.stringify(rule.schema ?? 'required')}`)
    }
    return { match, cloudevents, schema, onInvalid: rule.onInvalid === 'disconnect' ? 'disconnect' : 'dlq' }
  })
}

/** Read and parse a YAML or JSON config file (YAML is a superset of JSON). */
export function readConfigFile (path: string): { name: string, data: unknown } {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err: unknown) {
    throw new ConfigError(`config file ${path}`, '', `cannot be read: ${messageOf(err)}`, { cause: err })
  }
  try {
    return { name: path, data: parseYaml(text) ?? {} }
  } catch (err: unknown) {
    throw new ConfigError(`config file ${path}`, '', `is neither valid YAML nor JSON: ${messageOf(err)}`, { cause: err })
  }
}

function fromFlags (flags: NonNullable<LoadConfigOptions['flags']>): Layer {
  const data: Record<string, unknown> = {}
  const origin = new Map<string, string>()
  for (const spec of OPTIONS) {
    if (spec.flag === undefined) continue
    const value = flags[spec.flag.slice(2)]
    if (typeof value !== 'string') continue
    for (const path of spec.paths) {
      setPath(data, path, value)
      origin.set(path, `flag ${spec.flag}`)
    }
  }
  return { data, source: 'command line', coerce: true, origin }
}

function fromEnv (env: Readonly<Record<string, string | undefined>>): Layer {
  const byName = new Map<string, OptionSpec>(OPTIONS.map((spec) => [spec.env, spec]))
  const data: Record<string, unknown> = {}
  const origin = new Map<string, string>()
  // CE_BROKER_HOST first so that CE_BROKER_MQTT_HOST / CE_BROKER_HTTP_HOST refine it
  const names = Object.keys(env).filter((name) => name.startsWith('CE_BROKER_')).sort((a, b) => a.length - b.length)
  for (const name of names) {
    const value = env[name]
    if (value === undefined) continue
    const spec = byName.get(name)
    if (spec === undefined) {
      throw new ConfigError(`env ${name}`, '', `is not a known setting (got "${value}"); known: ${[...byName.keys()].join(', ')}`)
    }
    for (const path of spec.paths) {
      setPath(data, path, value)
      origin.set(path, `env ${name}`)
    }
  }
  return { data, source: 'environment', coerce: true, origin }
}

function layerError (layer: Layer, errors: ErrorObject[] | null | undefined): ConfigError {
  const first = errors?.[0]
  if (first === undefined) return new ConfigError(layer.source, '', 'is invalid')
  const segments = first.instancePath.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
  let detail: string
  if (first.keyword === 'additionalProperty' || first.keyword === 'additionalProperties') {
    const key = String(first.params.additionalProperty)
    segments.push(key)
    detail = `is not a known key${known(first.parentSchema)}`
  } else if (first.keyword === 'required') {
    segments.push(String(first.params.missingProperty))
    detail = 'is required'
  } else {
    detail = `${first.message ?? first.keyword}, got ${JSON.stringify(getPath(layer.data, segments))}`
    if ((first.keyword === 'pattern' || first.keyword === 'format') && segments.join('.') === 'redis.url') detail = `must be a redis:// or rediss:// URL, got ${JSON.stringify(getPath(layer.data, segments))}`
    const allowed: unknown = first.params.allowedValues
    if (first.keyword === 'enum' && Array.isArray(allowed)) detail += ` (allowed: ${allowed.join(', ')})`
  }
  const path = segments.join('.')
  return new ConfigError(layer.origin?.get(path) ?? layer.source, path, detail)
}

function known (schema: unknown): string {
  if (!isRecord(schema) || !isRecord(schema.properties)) return ''
  return `; known keys: ${Object.keys(schema.properties).join(', ')}`
}

function asObject (value: unknown, source: string): Record<string, unknown> {
  if (value === undefined || value === null) return {}
  if (!isRecord(value)) throw new ConfigError(source, '', `must be an object, got ${JSON.stringify(value)}`)
  return structuredClone(value)
}

function isRecord (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function setPath (target: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split('.')
  let node = target
  for (const key of keys.slice(0, -1)) {
    const next = node[key]
    if (isRecord(next)) {
      node = next
    } else {
      const created: Record<string, unknown> = {}
      node[key] = created
      node = created
    }
  }
  node[keys[keys.length - 1] ?? ''] = value
}

function getPath (source: unknown, keys: readonly string[]): unknown {
  let node = source
  for (const key of keys) node = typeof node === 'object' && node !== null ? Reflect.get(node, key) : undefined
  return node
}

/** Objects merge key by key; anything else (arrays included) is replaced. Inputs are not modified. */
function deepMerge (base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base }
  for (const [key, value] of Object.entries(over)) {
    if (value === undefined) continue
    const current = out[key]
    out[key] = isRecord(current) && isRecord(value) ? deepMerge(current, value) : value
  }
  return out
}

function deepFreeze<T> (value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child)
    Object.freeze(value)
  }
  return value
}
