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
 * the built-in plugins unless told otherwise, their config sections bound into
 * `loadConfig`, and what the built-in plugins export.
 */
import { createBroker as createCoreBroker, type Broker, type BrokerInput as CoreBrokerInput } from './core/index.js'
import { BUILTIN_SECTIONS, type ConfigInput } from './config.js'
import { builtinPlugins } from './preset.js'

export * from './core/index.js'
export { loadConfig, defaults, OPTIONS, BUILTIN_SECTIONS, builtinConfig, type BrokerConfig, type ConfigInput } from './config.js'
export { builtinPlugins, type BuiltinOverrides } from './preset.js'
export type { ValidationRule } from '../plugins/schema-validation/config.js'
export type { WebhookSubscriptionInput } from '../plugins/webhooks/config.js'
export type { AclRuleInput, AuthJwt, AuthUser } from '../plugins/auth/config.js'
export { MemoryDeadLetterStore, RedisDeadLetterStore, DEAD_LETTERS, type DeadLetters, type DeadLetterEntry, type DeadLetterPage, type DeadLetterQuery, type DeadLetterRecord, type DeadLetterStore, type OriginalMessage } from '../plugins/dead-letter/index.js'
export { WEBHOOKS, type WebhookRegistry, type WebhookListing, type Resolver } from '../plugins/webhooks/index.js'
export { SCHEMAS, type Schemas } from '../plugins/schema-validation/index.js'

/** `createBroker()` input: a partial config (the built-in plugins' settings included) plus what only code can give. */
export type BrokerInput = CoreBrokerInput & ConfigInput

/**
 * Start a broker (see the core's `createBroker`): `preset` defaults to the built-in
 * plugins (`builtinPlugins()`), which load before `plugins`, and their config sections
 * are loaded with the core's; pass `preset: () => []` for none, or a preset of your own.
 */
export async function createBroker (input: BrokerInput = {}): Promise<Broker> {
  return await createCoreBroker({ preset: builtinPlugins(), ...input, sections: [...BUILTIN_SECTIONS, ...(input.sections ?? [])] })
}
