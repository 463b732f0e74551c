import type { BoundPorts } from '../../src/core/index.js'

/** The listeners' settings, as the config's `mqtt` and `http` sections give them. */
export interface ListenerSettings {
  readonly mqtt: { readonly host: string, readonly port: number, readonly tls?: { readonly port: number } }
  readonly http: { readonly host: string, readonly port: number, readonly tls?: object }
}

/** How the request for the document reached the broker: its `Host` (or a trusted proxy's `X-Forwarded-Host`) and scheme. */
export interface RequestOrigin {
  readonly host: string
  readonly protocol: string
}

/** Who may connect, for the servers' `security`. */
export interface ClientAuth {
  /** Users or JWTs are configured: clients send a user name and password. */
  readonly credentials: boolean
  /** Clients without credentials get in too. */
  readonly anonymous: boolean
}

/** An AsyncAPI 3.0 Server Object, as far as the broker fills it. */
export interface AsyncApiServer {
  readonly host: string
  readonly pathname?: string
  readonly protocol: string
  readonly protocolVersion: string
  readonly title: string
  readonly description: string
  readonly security?: ReadonlyArray<{ readonly $ref: string }>
}

/** The servers, the security schemes they name, and the base URL of the HTTP API. */
export interface DescribedListeners {
  readonly servers: Readonly<Record<string, AsyncApiServer>>
  readonly securitySchemes: Readonly<Record<string, object>>
  readonly httpBase: string
}

/** A host name, an IPv4 address or a bracketed IPv6 one, with an optional port: what a `Host` header may name us by. */
const HOST_HEADER = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}))*\.?|\[[0-9A-Fa-f:.]{2,45}\])(?::([0-9]{1,5}))?$/
const WILDCARDS: ReadonlySet<string> = new Set(['0.0.0.0', '::', '[::]', '::0'])
const USER_PASSWORD = 'mqttUserPassword'

/**
 * The broker's listeners as AsyncAPI servers: MQTT/TCP, MQTT/TLS when `mqtt.tls` is
 * set, and MQTT over WebSocket at `/mqtt` on the HTTP port (`wss` when the HTTP port
 * serves TLS, or a trusted proxy says the request came over HTTPS), on the ports bound.
 * The WebSocket server is named as the request named the broker (its `Host`): that is
 * the address this client reached the HTTP port by. The MQTT listeners keep their
 * configured address, unless it is a wildcard (`0.0.0.0`, `::`), which no client can
 * connect to: then the request's host name stands for it. A `Host` that is no host
 * name is ignored.
 */
export function describeListeners (settings: ListenerSettings, ports: BoundPorts | undefined, origin: RequestOrigin, auth: ClientAuth): DescribedListeners {
  const requested = HOST_HEADER.test(origin.host) ? origin.host : undefined
  const requestedName = requested?.replace(/:[0-9]+$/, '')
  const mqttHost = WILDCARDS.has(settings.mqtt.host) && requestedName !== undefined ? requestedName : bracketed(settings.mqtt.host)
  const httpHost = requested ?? `${WILDCARDS.has(settings.http.host) ? 'localhost' : bracketed(settings.http.host)}:${ports?.http ?? settings.http.port}`
  const secureHttp = settings.http.tls !== undefined || origin.protocol === 'https'
  const security = auth.credentials ? { security: [{ $ref: `#/components/securitySchemes/${USER_PASSWORD}` }] } : {}
  const who = !auth.credentials ? 'Anonymous clients are let in (no users are configured).' : auth.anonymous ? 'Clients send a user name and password, or none (anonymous access is allowed).' : 'Clients must send a user name and password.'
  const servers: Record<string, AsyncApiServer> = {
    mqtt: {
      host: `${mqttHost}:${ports?.mqtt ?? settings.mqtt.port}`,
      protocol: 'mqtt',
      protocolVersion: '3.1.1',
      title: 'MQTT over TCP',
      description: `MQTT 3.1.1 over TCP, for backend services. ${who}`,
      ...security
    }
  }
  if (settings.mqtt.tls !== undefined) {
    servers.mqtts = {
      host: `${mqttHost}:${ports?.mqttTls ?? settings.mqtt.tls.port}`,
      protocol: 'secure-mqtt',
      protocolVersion: '3.1.1',
      title: 'MQTT over TLS',
      description: `MQTT 3.1.1 over TLS. ${who}`,
      ...security
    }
  }
  const ws = secureHttp ? 'wss' : 'ws'
  servers[ws] = {
    host: httpHost,
    pathname: '/mqtt',
    protocol: ws,
    protocolVersion: '3.1.1',
    title: `MQTT over ${secureHttp ? 'secure ' : ''}WebSocket`,
    description: `MQTT 3.1.1 over WebSocket on the HTTP port, path \`/mqtt\`, for browsers and dashboards. ${who}`,
    ...security
  }
  const securitySchemes = auth.credentials
    ? { [USER_PASSWORD]: { type: 'userPassword', description: 'The MQTT CONNECT user name and password: a user of `auth.users`, or a JWT as the password when `auth.jwt` is set. ACL rules then decide which topics each may publish and subscribe to.' } }
    : {}
  return { servers, securitySchemes, httpBase: `${secureHttp ? 'https' : 'http'}://${httpHost}` }
}

/** An IPv6 address in brackets, as a host of `host:port` needs it. */
function bracketed (host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host
}
