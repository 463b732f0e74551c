import assert from 'node:assert/strict'
import { availableParallelism } from 'node:os'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { ConfigError, OPTIONS, loadConfig } from '../../src/index.js'

test('defaults run one embedded node on localhost', () => {
  const config = loadConfig()
  assert.deepEqual({ ...config, nodeId: 'x' }, {
    mqtt: { host: '127.0.0.1', port: 1883, proxyProtocol: false },
    http: { host: '127.0.0.1', port: 8080, publicMetrics: false },
    nodeId: 'x',
    logLevel: 'info',
    schemas: { dir: './schemas', dataDir: './data', compatibility: 'BACKWARD', mode: 'enforce' },
    // one validation worker per core beyond the first, at most 4
    validation: { default: 'pass', rules: [{ match: 'albergue/#', cloudevents: true, schema: 'required', onInvalid: 'dlq' }], workers: Math.min(availableParallelism() - 1, 4) },
    limits: { maxPayloadBytes: 262144, maxConnections: 10000, connectionsPerSecondPerAddress: 100, maxConnectionsPerAddress: 1000, connectTimeoutMs: 10000, maxTopicLevels: 100, maxTopicBytes: 1024, maxSubscriptionsPerClient: 100, maxSharedGroups: 1000, maxKeepaliveSeconds: 0, drainTimeoutMs: 60000, maxInflightInbound: 1000, httpBodyBytes: 1048576, maxPacketBytes: 327680, maxConnectPacketBytes: 65536, maxFiltersPerPacket: 100, maxQueuedMessages: 1000, maxQueuedBytes: 8388608, slowConsumerMs: 500, publishRatePerClient: 0, publishBurstPerClient: 100, rejectionWaitMs: 1000, clientLogIntervalMs: 10000 },
    deadLetters: { maxEntries: 10000, replayRatePerSecond: 100, replayLeaseMs: 10000 },
    idempotency: { enabled: true, windowMs: 86400000, maxEntries: 100000 },
    audit: { enabled: true, topic: true, payload: true, redact: [], stream: { key: 'ce-broker:audit', maxLen: 1000000 }, recent: { maxEntries: 1000, maxBytes: 16777216 } },
    auth: { allowAnonymous: false, users: [], acl: [], loginFailures: { max: 10, windowMs: 60000 }, apiKeys: [] },
    // no otlpUrl: tracing is off
    tracing: { serviceName: 'ce-broker', sampleRatio: 1, maxQueueSize: 2048, maxExportBatchSize: 512, exportDelayMs: 5000, exportTimeoutMs: 10000 },
    webhooks: {
      defaults: { retry: { maxAttempts: 8, initialDelayMs: 1000, maxDelayMs: 300000 }, timeoutMs: 10000, ttlMs: 86400000, concurrency: 128, latencyTargetMs: 1000 },
      intake: { highWater: 1000, holdMs: 10000 },
      maxQueued: 10000,
      breaker: { failures: 5, halfOpenAfterMs: 30000 },
      lockMs: 15000,
      origin: '',
      denyNetworks: ['169.254.0.0/16', 'fd00:ec2::254/128'],
      filters: { maxExpressionLength: 4096, maxDepth: 32, maxFilters: 64 },
      subscriptions: []
    }
  })
  assert.equal(config.redis, undefined)
  assert.match(config.nodeId, new RegExp(`-${process.pid}$`))
  assert.ok(Object.isFrozen(config) && Object.isFrozen(config.mqtt), 'the config is deep-frozen')
})

test('precedence: defaults < programmatic < file < flags < CE_BROKER_* environment', () => {
  const config = loadConfig({ mqtt: { port: 1 }, logLevel: 'warn', nodeId: 'from-code' }, {
    file: { name: 'broker.yaml', data: { mqtt: { port: 2 }, http: { port: 3 }, nodeId: 'from-file' } },
    flags: { 'mqtt-port': '4', 'node-id': 'from-flag' },
    env: { CE_BROKER_MQTT_PORT: '5', PATH: '/bin' }
  })
  assert.equal(config.mqtt.port, 5, 'env beats flag, file and code')
  assert.equal(config.nodeId, 'from-flag', 'flag beats file and code')
  assert.equal(config.http.port, 3, 'file beats defaults')
  assert.equal(config.logLevel, 'warn', 'code beats defaults')
})

test('--host and CE_BROKER_HOST set every listener; the per-listener variables refine them', () => {
  const config = loadConfig({}, { env: { CE_BROKER_HOST: '0.0.0.0', CE_BROKER_HTTP_HOST: '127.0.0.1' } })
  assert.equal(config.mqtt.host, '0.0.0.0')
  assert.equal(config.http.host, '127.0.0.1')
  assert.equal(loadConfig({}, { flags: { host: '::' } }).http.host, '::')
})

test('env strings are coerced: ports to integers, booleans to booleans', () => {
  const config = loadConfig({}, { env: { CE_BROKER_HTTP_PORT: '0', CE_BROKER_HTTP_PUBLIC_METRICS: 'true', CE_BROKER_REDIS_URL: 'redis://127.0.0.1:6379/2' } })
  assert.equal(config.http.port, 0)
  assert.equal(config.http.publicMetrics, true)
  assert.deepEqual(config.redis, { url: 'redis://127.0.0.1:6379/2' })
})

test('mqtt.tls without a port takes 8883; a TLS block needs both key and cert', () => {
  assert.equal(loadConfig({ mqtt: { tls: { key: 'k.pem', cert: 'c.pem' } } }).mqtt.tls?.port, 8883)
  assert.throws(() => loadConfig({}, { flags: { 'mqtt-tls-port': '8883' } }), { message: /mqtt\.tls\.key is required/ })
})

test('errors name the source, the key path and the value', () => {
  const cases: Array<[() => unknown, RegExp]> = [
    [() => loadConfig({}, { file: { name: 'broker.yaml', data: { mqtt: { prot: 1883 } } } }), /^config file broker\.yaml: mqtt\.prot is not a known key; known keys: host, port, proxyProtocol, tls$/],
    [() => loadConfig({}, { file: { name: 'broker.yaml', data: { http: { port: 'eighty' } } } }), /^config file broker\.yaml: http\.port must be integer, got "eighty"$/],
    [() => loadConfig({}, { file: { name: 'b.json', data: { mqtt: { port: 70000 } } } }), /^config file b\.json: mqtt\.port must be <= 65535, got 70000$/],
    [() => loadConfig({}, { file: { name: 'b.yaml', data: { redis: { url: 'http://cache:6379' } } } }), /^config file b\.yaml: redis\.url must be a redis:\/\/, rediss:\/\/ or redis\+sentinel:\/\/ URL, got "http:\/\/cache:6379"$/],
    [() => loadConfig({}, { file: { name: 'b.yaml', data: { redis: { url: 'redis://bad host:6379' } } } }), /redis\.url must be a redis:\/\/, rediss:\/\/ or redis\+sentinel:\/\/ URL, got "redis:\/\/bad host:6379"/],
    [() => loadConfig({}, { file: { name: 'b.yaml', data: { redis: { url: 'redis+sentinel://s1:26379,s2:26379' } } } }), /redis\.url must be a redis:\/\/, rediss:\/\/ or redis\+sentinel:\/\/ URL, got "redis\+sentinel:\/\/s1:26379,s2:26379"/],
    [() => loadConfig({}, { file: { name: 'b.yaml', data: { logLevel: 'loud' } } }), /logLevel must be equal to one of the allowed values, got "loud" \(allowed: fatal, error, warn, info, debug, trace, silent\)/],
    [() => loadConfig({}, { env: { CE_BROKER_MQTT_PORT: 'abc' } }), /^env CE_BROKER_MQTT_PORT: mqtt\.port must be integer, got "abc"$/],
    [() => loadConfig({}, { flags: { 'http-port': '-1' } }), /^flag --http-port: http\.port must be >= 0, got -1$/],
    [() => loadConfig({}, { env: { CE_BROKER_MQTT_PROT: '1' } }), /^env CE_BROKER_MQTT_PROT: is not a known setting \(got "1"\)/],
    [() => loadConfig({ nodeId: 'a b' }), /^createBroker\(\) options: nodeId must match pattern/],
    [() => loadConfig([]), /must be an object/]
  ]
  for (const [load, message] of cases) {
    assert.throws(load, (err: unknown) => {
      assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`)
      assert.equal(err.code, 'BRK_CONFIG_INVALID')
      assert.match(err.message, message)
      return true
    })
  }
})

test('validation rules get their defaults; a rule that cannot work is refused naming it', () => {
  const config = loadConfig({ validation: { rules: [{ match: 'albergue/#' }, { match: 'legacy/+/raw', cloudevents: false, schema: 'none', onInvalid: 'disconnect' }] } })
  assert.deepEqual(config.validation.rules, [
    { match: 'albergue/#', cloudevents: true, schema: 'required', onInvalid: 'dlq' },
    { match: 'legacy/+/raw', cloudevents: false, schema: 'none', onInvalid: 'disconnect' }
  ])
  assert.equal(config.validation.default, 'pass')
  assert.deepEqual(loadConfig({ validation: { rules: [] } }).validation.rules, [], 'an empty list turns validation off')
  assert.throws(() => loadConfig({ validation: { rules: [{ match: 'a/#/b' }] } }), /config: validation\.rules\.0\.match "#" must be a whole level and the last one, got "a\/#\/b"/)
  assert.throws(() => loadConfig({ validation: { rules: [{ match: 'x/#', cloudevents: false }] } }), /validation\.rules\.0\.schema must be "none" when cloudevents is false/)
  assert.throws(() => loadConfig({}, { file: { name: 'b.yaml', data: { validation: { rules: [{ match: 'x', onInvalid: 'drop' }] } } } }), /config file b\.yaml: validation\.rules\.0\.onInvalid must be equal to one of the allowed values, got "drop" \(allowed: dlq, disconnect\)/)
  assert.equal(loadConfig({}, { env: { CE_BROKER_LIMITS_MAX_PAYLOAD_BYTES: '1024' } }).limits.maxPayloadBytes, 1024)
})

test('the caller\'s input is not modified', () => {
  const input = { mqtt: { port: 1 } }
  loadConfig(input, { env: { CE_BROKER_MQTT_HOST: '0.0.0.0' } })
  assert.deepEqual(input, { mqtt: { port: 1 } })
})

test('the README\'s config table lists every setting with its env variable and flag', () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')
  for (const spec of OPTIONS) {
    const row = readme.split('\n').find((line) => line.startsWith('|') && line.includes(`\`${spec.env}\``))
    assert.ok(row !== undefined, `README has no row for ${spec.env}`)
    if (spec.flag !== undefined) assert.ok(row.includes(`\`${spec.flag}`), `README row of ${spec.env} does not name ${spec.flag}`)
    for (const path of spec.paths) assert.ok(readme.includes(`\`${path}\``), `README does not document ${path}`)
  }
})
