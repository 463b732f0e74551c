import { Type } from '@sinclair/typebox'
import { configSection, setting } from '../../src/core/index.js'

/** Duplicates of an event (same `source` + `id`) on validated topics. */
export const idempotencySection = configSection({
  key: 'idempotency',
  schema: Type.Object({
    enabled: Type.Boolean({
      default: true,
      ...setting({ env: 'CE_BROKER_IDEMPOTENCY_ENABLED', doc: 'drop a second copy of an event (same `source` + `id`) on validated topics' })
    }),
    windowMs: Type.Integer({
      minimum: 1,
      default: 24 * 60 * 60 * 1000,
      ...setting({ env: 'CE_BROKER_IDEMPOTENCY_WINDOW_MS', defaultNote: '24 h', doc: 'how long an accepted event is remembered' })
    }),
    maxEntries: Type.Integer({
      minimum: 1,
      default: 100_000,
      ...setting({ env: 'CE_BROKER_IDEMPOTENCY_MAX_ENTRIES', doc: 'events the memory store remembers; beyond it the least recently seen are forgotten (and counted). Redis keeps every key for the window' })
    })
  }, { additionalProperties: false })
})
