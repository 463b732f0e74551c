import proxyaddr from 'proxy-addr'
import { Type } from '@sinclair/typebox'
import { ConfigError, messageOf } from '../errors.js'
import { configSection, setting, type Settings } from './section.js'

const port = { minimum: 0, maximum: 65535 }
const nonEmpty = { minLength: 1 }

/** TLS material of the HTTP listener: paths of PEM files, read once at start-up. */
const httpTls = Type.Object({
  key: Type.String({ ...nonEmpty, ...setting({ env: 'CE_BROKER_HTTP_TLS_KEY', doc: 'PEM private key: the HTTP port serves HTTPS and WSS' }) }),
  cert: Type.String({ ...nonEmpty, ...setting({ env: 'CE_BROKER_HTTP_TLS_CERT', doc: 'PEM certificate: the HTTP port serves HTTPS and WSS' }) })
}, { additionalProperties: false })

/** TLS material: paths of PEM files, read once at start-up. */
export type TlsFiles = Settings<typeof httpTls>

/** The MQTT/TCP listener, and the MQTT/TLS one when its key and certificate are set. */
export const mqttSection = configSection({
  key: 'mqtt',
  schema: Type.Object({
    host: Type.String({ ...nonEmpty, default: '127.0.0.1', ...setting({ env: 'CE_BROKER_MQTT_HOST', doc: 'address of the MQTT/TCP and MQTT/TLS listeners' }) }),
    port: Type.Integer({ ...port, default: 1883, ...setting({ env: 'CE_BROKER_MQTT_PORT', flag: '--mqtt-port', flagArg: 'N', doc: 'MQTT/TCP port (0 = any free port)' }) }),
    proxyProtocol: Type.Boolean({
      default: false,
      ...setting({
        env: 'CE_BROKER_MQTT_PROXY_PROTOCOL',
        doc: 'every MQTT/TCP connection starts with a PROXY protocol header (v1 or v2, HAProxy `send-proxy-v2`) naming the client, whose address the limits, the audit and the logs then use; a socket without one is closed. Not for the TLS listener (terminate TLS at the proxy)'
      })
    }),
    // absent: no TLS listener; present without a port, it takes MQTT over TLS's 8883
    tls: Type.Optional(Type.Object({
      port: Type.Integer({ ...port, default: 8883, ...setting({ env: 'CE_BROKER_MQTT_TLS_PORT', flag: '--mqtt-tls-port', flagArg: 'N', doc: 'MQTT/TLS port; the listener runs when `mqtt.tls.key` and `mqtt.tls.cert` are set' }) }),
      key: Type.String({ ...nonEmpty, ...setting({ env: 'CE_BROKER_MQTT_TLS_KEY', doc: 'PEM private key file of the MQTT/TLS listener' }) }),
      cert: Type.String({ ...nonEmpty, ...setting({ env: 'CE_BROKER_MQTT_TLS_CERT', doc: 'PEM certificate (chain) file of the MQTT/TLS listener' }) })
    }, { additionalProperties: false }))
  }, { additionalProperties: false }),
  shortcuts: [{
    paths: ['mqtt.host', 'http.host'],
    env: 'CE_BROKER_HOST',
    flag: '--host',
    flagArg: 'ADDR',
    doc: 'address of every listener (local-only by default, as Mosquitto 2)'
  }]
})

/** The HTTP listener: API, dashboard, MQTT over WebSocket at `/mqtt`. */
const httpSchema = Type.Object({
  host: Type.String({ ...nonEmpty, default: '127.0.0.1', ...setting({ env: 'CE_BROKER_HTTP_HOST', doc: 'address of the HTTP listener' }) }),
  port: Type.Integer({ ...port, default: 8080, ...setting({ env: 'CE_BROKER_HTTP_PORT', flag: '--http-port', flagArg: 'N', doc: 'HTTP port: API, dashboard, MQTT over WebSocket at `/mqtt` (0 = any free port)' }) }),
  // serve HTTPS and WSS instead of HTTP and WS
  tls: Type.Optional(httpTls),
  publicMetrics: Type.Boolean({ default: false, ...setting({ env: 'CE_BROKER_HTTP_PUBLIC_METRICS', doc: 'serve `/metrics` without an API key once API keys exist' }) }),
  // absent: the socket's address names the client, always
  trustProxy: Type.Optional(Type.String({
    ...nonEmpty,
    ...setting({
      env: 'CE_BROKER_HTTP_TRUST_PROXY',
      doc: 'proxies whose `X-Forwarded-For` names the client of HTTP requests and WebSocket MQTT connections: addresses, CIDRs, `loopback`, `linklocal` or `uniquelocal`, comma-separated'
    })
  }))
}, { additionalProperties: false })

export const httpSection = configSection({ key: 'http', schema: httpSchema, check: checkTrustProxy })

/** `http.trustProxy` must be what proxy-addr (and fastify) understand. */
function checkTrustProxy (http: Settings<typeof httpSchema>): void {
  const value = http.trustProxy
  if (value === undefined) return
  try {
    proxyaddr.compile(value.split(/ *, */))
  } catch (err: unknown) {
    throw new ConfigError('config', 'http.trustProxy', `${messageOf(err)}, got ${JSON.stringify(value)}`, { cause: err })
  }
}
