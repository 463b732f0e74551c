import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Type } from '@sinclair/typebox'
import { expectTypeOf } from 'expect-type'
import { ConfigError, OPTIONS, configSection, loadConfig, loadedWith, setting, type AclRuleInput, type AuthUser, type BrokerConfig, type ValidationRule } from '../../src/index.js'
import { loadConfig as loadCore, type ApiKeyInput } from '../../src/core/config/index.js'

/** A third-party plugin's section: one setting, with its variable. */
const metering = configSection({
  key: 'metering',
  schema: Type.Object({
    sampleRate: Type.Number({ minimum: 0, maximum: 1, default: 0.1, ...setting({ env: 'CE_BROKER_METERING_SAMPLE_RATE', doc: 'share of events traced' }) })
  }, { additionalProperties: false })
})

test('the built-in config\'s type is the core\'s and every built-in section\'s, as the schemas say', () => {
  expectTypeOf<BrokerConfig['validation']['rules']>().toEqualTypeOf<readonly ValidationRule[]>()
  expectTypeOf<ValidationRule>().toEqualTypeOf<{ readonly match: string, readonly cloudevents: boolean, readonly schema: 'required' | 'optional' | 'none', readonly onInvalid: 'dlq' | 'disconnect' }>()
  expectTypeOf<BrokerConfig['auth']['apiKeys']>().toEqualTypeOf<readonly ApiKeyInput[]>()
  expectTypeOf<BrokerConfig['auth']['users']>().toEqualTypeOf<readonly AuthUser[]>()
  expectTypeOf<BrokerConfig['auth']['acl']>().toEqualTypeOf<readonly AclRuleInput[]>()
  expectTypeOf<BrokerConfig['redis']>().toEqualTypeOf<{ readonly url: string, readonly outageHoldMs?: number, readonly maxRouteBacklog?: number, readonly waitReplicas?: number, readonly nodeTimeoutMs?: number } | undefined>()
})

test('a plugin\'s section is loaded only when given: defaults, env variable, unknown keys', () => {
  const config = loadCore({}, { sections: [metering], env: { CE_BROKER_METERING_SAMPLE_RATE: '0.5' } })
  expectTypeOf(config.metering.sampleRate).toEqualTypeOf<number>()
  assert.equal(config.metering.sampleRate, 0.5)
  assert.ok(loadedWith(config, [metering]))
  assert.ok(!loadedWith(loadCore(), [metering]), 'a config loaded without the section does not have it')
  assert.throws(() => loadCore({ metering: {} }), /createBroker\(\) options: metering is not a known key; known keys: mqtt, http, redis, nodeId, logLevel, limits, auth, tracing$/)
  assert.throws(() => loadCore({}, { env: { CE_BROKER_AUDIT_ENABLED: 'true' } }), /env CE_BROKER_AUDIT_ENABLED: is not a known setting/, 'the core alone knows no plugin\'s variables')
  assert.ok(OPTIONS.some((spec) => spec.env === 'CE_BROKER_AUDIT_ENABLED'), 'the package entry\'s OPTIONS include the built-in plugins\'')
  assert.deepEqual(loadConfig().auth.apiKeys, [], 'the core\'s auth.apiKeys and the auth plugin\'s settings share `auth`')
})

test('two sections defining the same setting stop start-up', () => {
  const users = configSection({ key: 'auth', schema: Type.Object({ apiKeys: Type.Array(Type.String(), { default: [] }) }) })
  assert.throws(() => loadCore({}, { sections: [users] }), (err: unknown) => {
    assert.ok(err instanceof ConfigError)
    assert.equal(err.message, 'config sections: auth.apiKeys is defined by two sections')
    return true
  })
})
