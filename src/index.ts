/**
 * ce-broker: an embeddable MQTT broker for CloudEvents on top of Aedes.
 *
 * ```ts
 * import { createBroker } from 'ce-broker'
 * const broker = await createBroker({ mqtt: { port: 0 }, http: { port: 0 } })
 * await broker.close()
 * ```
 *
 * The package entry: the core's API (`src/core/index.ts`) with `createBroker` running
 * the built-in plugins unless told otherwise, and what the built-in plugins export.
 */
import { createBroker as createCoreBroker, type Broker, type BrokerInput } from './core/index.js'
import { builtinPlugins } from './preset.js'

export * from './core/index.js'
export { builtinPlugins, type BuiltinOverrides } from './preset.js'
export { MemoryDeadLetterStore, RedisDeadLetterStore, DEAD_LETTERS, type DeadLetters, type DeadLetterEntry, type DeadLetterPage, type DeadLetterQuery, type DeadLetterRecord, type DeadLetterStore, type OriginalMessage } from '../plugins/dead-letter/index.js'
export { WEBHOOKS, type WebhookRegistry, type WebhookListing, type Resolver } from '../plugins/webhooks/index.js'
export { SCHEMAS, type Schemas } from '../plugins/schema-validation/index.js'

/**
 * Start a broker (see the core's `createBroker`): `preset` defaults to the built-in
 * plugins (`builtinPlugins()`), which load before `plugins`; pass `preset: () => []`
 * for none, or a preset of your own.
 */
export async function createBroker (input: BrokerInput = {}): Promise<Broker> {
  return await createCoreBroker({ preset: builtinPlugins(), ...input })
}
