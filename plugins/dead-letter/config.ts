import { Type } from '@sinclair/typebox'
import { configSection, setting } from '../../src/core/index.js'

/** The dead-letter store. */
export const deadLettersSection = configSection({
  key: 'deadLetters',
  schema: Type.Object({
    maxEntries: Type.Integer({
      minimum: 1,
      default: 10_000,
      ...setting({ env: 'CE_BROKER_DEAD_LETTERS_MAX_ENTRIES', doc: 'dead letters kept in the store; the oldest are evicted (and counted) beyond it' })
    }),
    replayRatePerSecond: Type.Integer({
      minimum: 1,
      default: 100,
      ...setting({ env: 'CE_BROKER_DEAD_LETTERS_REPLAY_RATE_PER_SECOND', doc: 'most dead letters a bulk redrive (`POST /api/dlq/replay`) replays a second, so that it never floods the broker or a webhook receiver' })
    }),
    replayLeaseMs: Type.Integer({
      minimum: 100,
      default: 10_000,
      ...setting({ env: 'CE_BROKER_DEAD_LETTERS_REPLAY_LEASE_MS', doc: 'with Redis: a running redrive whose node has not moved it on for this long (the node died) may be resumed by another node, in ms; at least three pauses of `replayRatePerSecond` (a shorter value is raised, with a warning)' })
    })
  }, { additionalProperties: false })
})
