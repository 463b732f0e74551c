import { hostname } from 'node:os'
import { Type } from '@sinclair/typebox'
import { limitsSection } from './limits.js'
import { httpSection, mqttSection } from './listeners.js'
import { configSection, enumOf, setting, type DeepPartial, type SectionsConfig, type Settings } from './section.js'
import { tracingSection } from './tracing.js'

/** Redis for persistence and routing between nodes; absent = embedded (memory) mode. */
export const redisSection = configSection({
  key: 'redis',
  schema: Type.Optional(Type.Object({
    url: Type.String({
      pattern: '^(rediss?://\\S+|redis\\+sentinel://[^/\\s]+/[^/\\s?]+(/\\d+)?/?(\\?\\S*)?)$',
      ...setting({
        env: 'CE_BROKER_REDIS_URL',
        flag: '--redis',
        flagArg: 'URL',
        shownDefault: 'none (embedded)',
        doc: '`redis://[user:pass@]host:port[/db]`, `rediss://` (TLS) or `redis+sentinel://[user:pass@]host:port[,host:port…]/<master>[/db]` (the master Sentinel watches, see [Running a cluster](#running-a-cluster)); switches persistence and routing to Redis'
      })
    }),
    // no schema default: the broker waits 10000 ms when it is absent, and `redis` stays as it was given
    outageHoldMs: Type.Optional(Type.Integer({
      minimum: 0,
      ...setting({
        env: 'CE_BROKER_REDIS_OUTAGE_HOLD_MS',
        shownDefault: '`10000`',
        doc: 'while Redis is unreachable, how long a publish waits (not acked) before its client is disconnected; see [Running a cluster](#running-a-cluster)'
      })
    })),
    maxRouteBacklog: Type.Optional(Type.Integer({
      minimum: 100,
      ...setting({
        env: 'CE_BROKER_REDIS_MAX_ROUTE_BACKLOG',
        shownDefault: '`10000`',
        doc: 'messages waiting in one node\'s cluster inbox; beyond it publishes routed to that node wait (their publishers are read no further) until it has read down to half'
      })
    })),
    waitReplicas: Type.Optional(Type.Integer({
      minimum: 0,
      ...setting({
        env: 'CE_BROKER_REDIS_WAIT_REPLICAS',
        shownDefault: '`0`',
        doc: 'with a replicated Redis (Sentinel): an event is acknowledged once its journal entry is on this many replicas (`WAIT`), so a failover loses no acknowledged event; `0` acknowledges once the master has it'
      })
    })),
    nodeTimeoutMs: Type.Optional(Type.Integer({
      minimum: 1000,
      ...setting({
        env: 'CE_BROKER_REDIS_NODE_TIMEOUT_MS',
        shownDefault: '`10000`',
        doc: 'a node whose heartbeat (every third of this) has been missing this long is removed from the cluster with its routes and its inbox'
      })
    }))
  }, { additionalProperties: false }))
})

export const nodeIdSection = configSection({
  key: 'nodeId',
  // computed once: the same process keeps its name
  schema: Type.String({
    pattern: '^[A-Za-z0-9._-]{1,64}$',
    default: `${hostname()}-${process.pid}`,
    ...setting({
      env: 'CE_BROKER_NODE_ID',
      flag: '--node-id',
      flagArg: 'ID',
      shownDefault: '`<hostname>-<pid>`',
      doc: 'this node\'s name in logs, records and `$SYS/<nodeId>/…`; `[A-Za-z0-9._-]{1,64}`'
    })
  })
})

/** pino levels, plus `silent`. */
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const

export type LogLevel = typeof LOG_LEVELS[number]

export const logLevelSection = configSection({
  key: 'logLevel',
  schema: enumOf(LOG_LEVELS, {
    default: 'info',
    ...setting({ env: 'CE_BROKER_LOG_LEVEL', flag: '--log-level', flagArg: 'LEVEL', doc: '`fatal`, `error`, `warn`, `info`, `debug`, `trace` or `silent`' })
  })
})

/** What an API key may do (PRODUCT §5). */
const API_SCOPES = ['publish', 'read', 'admin'] as const

/** An API key as configured: its id (for logs), the hash of the key, its scopes. */
const apiKeySchema = Type.Object({
  id: Type.String({ minLength: 1 }),
  key: Type.String({ pattern: '^\\$sha256\\$[A-Za-z0-9_-]{43}$' }),
  scopes: Type.Array(enumOf(API_SCOPES), { minItems: 1 })
}, { additionalProperties: false })

export type ApiScope = typeof API_SCOPES[number]
export type ApiKeyInput = Settings<typeof apiKeySchema>

/** The HTTP API's keys: the core's part of `auth`, whose other settings belong to the auth plugin. */
export const apiKeysSection = configSection({
  key: 'auth',
  schema: Type.Object({
    apiKeys: Type.Array(apiKeySchema, {
      default: [],
      ...setting({ doc: 'HTTP API keys `{ id, key, scopes }`: the key\'s hash from `ce-broker new-api-key`, scopes `publish`, `read`, `admin`; once any exists, the API needs one' })
    })
  }, { additionalProperties: false })
})

/** The sections every config has, whatever plugins run. */
export const CORE_SECTIONS = [mqttSection, httpSection, redisSection, nodeIdSection, logLevelSection, limitsSection, apiKeysSection, tracingSection] as const

/** The core's settings: what the broker itself reads. */
export type CoreConfig = SectionsConfig<typeof CORE_SECTIONS>

/** The core's settings as a caller gives them; the defaults fill the rest. */
export type CoreConfigInput = DeepPartial<CoreConfig>
