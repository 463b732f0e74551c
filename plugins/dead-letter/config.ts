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
    })
  }, { additionalProperties: false })
})
