import { Type, type TInteger } from '@sinclair/typebox'
import { configSection, setting, type SettingMeta } from './section.js'

/** MQTT's largest remaining length: 256 MiB less one byte. */
const MQTT_MAX_LENGTH = 268435455

/** An integer limit: its bounds, its default and how it is set and explained. */
function limit (bounds: { readonly minimum: number, readonly maximum?: number }, value: number, meta: SettingMeta): TInteger {
  return Type.Integer({ ...bounds, default: value, ...setting(meta) })
}

/** What one client, one address or one request may take (README: "One client cannot hurt another"). */
export const limitsSection = configSection({
  key: 'limits',
  schema: Type.Object({
    maxPayloadBytes: limit({ minimum: 1, maximum: MQTT_MAX_LENGTH }, 256 * 1024, {
      env: 'CE_BROKER_LIMITS_MAX_PAYLOAD_BYTES',
      defaultNote: '256 KiB',
      doc: 'largest PUBLISH payload; larger ones are refused while parsing, before the payload is read'
    }),
    maxConnections: limit({ minimum: 1 }, 10_000, {
      env: 'CE_BROKER_LIMITS_MAX_CONNECTIONS',
      doc: 'MQTT connections open at once, all transports; a socket beyond it is closed before a byte is read'
    }),
    connectionsPerSecondPerAddress: limit({ minimum: 1 }, 100, {
      env: 'CE_BROKER_LIMITS_CONNECTIONS_PER_SECOND_PER_ADDRESS',
      doc: 'new MQTT connections a second from one address, a burst of as many allowed; beyond it sockets are closed at once'
    }),
    maxConnectionsPerAddress: limit({ minimum: 1 }, 1000, {
      env: 'CE_BROKER_LIMITS_MAX_CONNECTIONS_PER_ADDRESS',
      doc: 'MQTT connections open at once from one address (an IPv6 /64 counts as one address); beyond it new sockets are closed at once'
    }),
    connectTimeoutMs: limit({ minimum: 100 }, 10_000, {
      env: 'CE_BROKER_LIMITS_CONNECT_TIMEOUT_MS',
      doc: 'how long a new connection may take to send its CONNECT before it is closed'
    }),
    // aedes' matchers hold 100 levels at most
    maxTopicLevels: limit({ minimum: 1, maximum: 100 }, 100, {
      env: 'CE_BROKER_LIMITS_MAX_TOPIC_LEVELS',
      doc: 'levels of a topic or filter (at most 100); a publish beyond it disconnects the client, a subscription gets SUBACK 0x80'
    }),
    maxTopicBytes: limit({ minimum: 1, maximum: 65535 }, 1024, {
      env: 'CE_BROKER_LIMITS_MAX_TOPIC_BYTES',
      doc: 'UTF-8 bytes of a topic or filter; a publish beyond it disconnects the client, a subscription gets SUBACK 0x80'
    }),
    maxSubscriptionsPerClient: limit({ minimum: 1 }, 100, {
      env: 'CE_BROKER_LIMITS_MAX_SUBSCRIPTIONS_PER_CLIENT',
      doc: 'subscriptions one client holds; beyond it SUBACK 0x80'
    }),
    maxSharedGroups: limit({ minimum: 1 }, 1000, {
      env: 'CE_BROKER_LIMITS_MAX_SHARED_GROUPS',
      doc: 'shared subscription groups (`$share/<group>/<filter>`, one per group name and filter) this node holds members of; a subscription that would start one more gets SUBACK 0x80'
    }),
    maxKeepaliveSeconds: limit({ minimum: 0, maximum: 65535 }, 0, {
      env: 'CE_BROKER_LIMITS_MAX_KEEPALIVE_SECONDS',
      defaultNote: 'any',
      doc: 'longest keepalive a client may ask for; a longer one, or none (0), gets CONNACK 6 (aedes\' code, beyond MQTT 3.1.1\'s 0–5)'
    }),
    drainTimeoutMs: limit({ minimum: 0 }, 60_000, {
      env: 'CE_BROKER_LIMITS_DRAIN_TIMEOUT_MS',
      doc: 'how long a client that reads nothing may hold up its deliveries before it is disconnected (0 = forever)'
    }),
    maxInflightInbound: limit({ minimum: 1 }, 1000, {
      env: 'CE_BROKER_LIMITS_MAX_INFLIGHT_INBOUND',
      doc: 'QoS 2 publishes of one client waiting for PUBREL; beyond it the client is disconnected'
    }),
    httpBodyBytes: limit({ minimum: 1024 }, 1024 * 1024, {
      env: 'CE_BROKER_LIMITS_HTTP_BODY_BYTES',
      defaultNote: '1 MiB',
      doc: 'largest HTTP request body, 413 beyond it; the publish routes take the larger of this and `limits.maxPayloadBytes`'
    }),
    maxPacketBytes: limit({ minimum: 64, maximum: MQTT_MAX_LENGTH }, 320 * 1024, {
      env: 'CE_BROKER_LIMITS_MAX_PACKET_BYTES',
      defaultNote: '320 KiB',
      doc: 'largest MQTT packet other than PUBLISH (its remaining length); refused from the header, before its bytes are buffered, and the client disconnected'
    }),
    maxConnectPacketBytes: limit({ minimum: 64, maximum: MQTT_MAX_LENGTH }, 64 * 1024, {
      env: 'CE_BROKER_LIMITS_MAX_CONNECT_PACKET_BYTES',
      defaultNote: '64 KiB',
      doc: 'largest packet of any type before the CONNECT is accepted, the CONNECT included; the connection is closed'
    }),
    maxFiltersPerPacket: limit({ minimum: 1 }, 100, {
      env: 'CE_BROKER_LIMITS_MAX_FILTERS_PER_PACKET',
      doc: 'topic filters in one SUBSCRIBE or UNSUBSCRIBE; beyond it the client is disconnected before the packet is parsed'
    }),
    maxQueuedMessages: limit({ minimum: 1 }, 1000, {
      env: 'CE_BROKER_LIMITS_MAX_QUEUED_MESSAGES',
      doc: 'messages waiting to be written to one client; beyond it QoS 0 messages for it are dropped (`ce_broker_dropped_total{reason="slow_consumer"}`), QoS 1/2 stay in its persistent session, a clean-session client is disconnected'
    }),
    maxQueuedBytes: limit({ minimum: 1024 }, 8 * 1024 * 1024, {
      env: 'CE_BROKER_LIMITS_MAX_QUEUED_BYTES',
      defaultNote: '8 MiB',
      doc: 'bytes (topic + payload) waiting to be written to one client, with the same consequences'
    }),
    slowConsumerMs: limit({ minimum: 20 }, 500, {
      env: 'CE_BROKER_LIMITS_SLOW_CONSUMER_MS',
      doc: 'how long a client\'s oldest unwritten message may hold up publishers (as aedes throttles them to what subscribers take) before the client counts as slow: from then on nobody waits for it and its messages go to its bounded queue, until it has caught up'
    }),
    publishRatePerClient: limit({ minimum: 0 }, 0, {
      env: 'CE_BROKER_LIMITS_PUBLISH_RATE_PER_CLIENT',
      defaultNote: 'off',
      doc: 'PUBLISH packets a second one client may send (0 = no limit); beyond it its publishes wait for their turn and its reads are paused, nothing is dropped (`ce_broker_limit_hits_total{limit="publish_rate"}`)'
    }),
    publishBurstPerClient: limit({ minimum: 1 }, 100, {
      env: 'CE_BROKER_LIMITS_PUBLISH_BURST_PER_CLIENT',
      doc: 'PUBLISH packets one client may send at once above `limits.publishRatePerClient` before its publishes wait'
    }),
    rejectionWaitMs: limit({ minimum: 0 }, 1000, {
      env: 'CE_BROKER_LIMITS_REJECTION_WAIT_MS',
      doc: 'how long a refused publish\'s PUBACK (or disconnect) waits for the refusal\'s record to be written to its publisher on `$rejections/<clientId>`, so that the record comes first; past it the publisher is answered anyway (`ce_broker_limit_hits_total{limit="rejection_wait"}`); 0: the answer does not wait for the record'
    }),
    clientLogIntervalMs: limit({ minimum: 0 }, 10_000, {
      env: 'CE_BROKER_LIMITS_CLIENT_LOG_INTERVAL_MS',
      doc: 'log lines a client can trigger (refused logins, subscriptions and publishes, rejected events, dropped messages): at most one per client per interval, the next one saying how many were suppressed'
    })
  }, { additionalProperties: false })
})
