import type { AedesOptions, AuthenticateError, Client } from 'aedes'
import { ConnectRefusedError, toBrokerError, type BrokerError } from '../errors.js'
import type { Logger } from '../logger.js'
import type { ConnectAttempt, ConnectHandler, ConnectRefusedHandler, Identity } from '../context.js'
import type { Connections } from '../transport/connections.js'
import { settleChain, tellEach } from './chain.js'

type AedesPreConnect = NonNullable<AedesOptions['preConnect']>
type AedesAuthenticate = NonNullable<AedesOptions['authenticate']>

export interface ConnectDeps {
  readonly preConnect: readonly ConnectHandler[]
  readonly authenticate: readonly ConnectHandler[]
  /** Told every refusal; a throw is reported, never fatal. */
  readonly refused: readonly ConnectRefusedHandler[]
  readonly reportError: (err: unknown, context: Readonly<Record<string, unknown>>) => void
  readonly connections: Connections
  readonly log: Logger
  /** Whether sessions can be read and stored now (false while Redis is unreachable): if not, CONNACK 3. */
  readonly available: () => boolean
}

/**
 * The preConnect and authenticate adapters. They share one piece of state: the
 * clients whose CONNECT must be answered with return code 2. preConnect sees the
 * raw packet but can only drop the socket; authenticate can answer with a CONNACK
 * code but sees the client id aedes has already made up. So preConnect notes the
 * client and authenticate refuses it.
 */
export function adaptConnect (deps: ConnectDeps): { preConnect: AedesPreConnect, authenticate: AedesAuthenticate } {
  const { connections, log } = deps
  const identifierRejected = new WeakSet<Client>()
  const attempts = new WeakMap<Client, ConnectAttempt>()

  function announce (attempt: ConnectAttempt, err: BrokerError): void {
    tellEach(deps.refused, [attempt, err], (thrown, handler) => { deps.reportError(thrown, { hook: 'connectRefused', handler, clientId: attempt.clientId }) })
  }

  function preConnect (client: Client, packet: Parameters<AedesPreConnect>[1], callback: Parameters<AedesPreConnect>[2]): void {
    // [MQTT-3.1.3-8]: a zero-byte client id with CleanSession=0 gets CONNACK 2, then the connection closes.
    // aedes would instead make up an id and keep a session nobody can ever resume.
    if (packet.clientId === '' && packet.clean === false) identifierRejected.add(client)

    const meta = connections.metaOf(client)
    const attempt: ConnectAttempt = {
      clientId: packet.clientId,
      clean: packet.clean ?? true,
      username: packet.username,
      password: packet.password,
      transport: meta?.transport ?? 'tcp',
      remoteAddress: meta?.remoteAddress,
      willTopic: packet.will?.topic,
      log: log.child({ clientId: packet.clientId }),
      // who the client is can only be said once its credentials are checked, in authenticate
      identify: () => {}
    }
    attempts.set(client, attempt)
    settleChain(deps.preConnect, attempt, function connectAllowed () { callback(null, true) }, function connectRefused (raw: unknown) {
      const err = toBrokerError(raw)
      attempt.log.warn({ err, remoteAddress: attempt.remoteAddress }, 'connection refused before CONNACK')
      announce(attempt, err)
      callback(err, false)
    })
  }

  function authenticate (client: Client, _username: unknown, _password: unknown, callback: Parameters<AedesAuthenticate>[3]): void {
    const seen = attempts.get(client)
    attempts.delete(client)
    if (identifierRejected.delete(client)) {
      const err = new ConnectRefusedError(2, 'a zero-byte client id requires CleanSession=1 [MQTT-3.1.3-8]', 'identifier_rejected')
      seen?.log.warn({ remoteAddress: seen.remoteAddress }, 'connection refused: empty client id with CleanSession=0')
      if (seen !== undefined) announce(seen, err)
      callback(refusal(err), false)
      return
    }
    if (!deps.available()) {
      // not a security event: logged at debug and not audited, or a reconnect storm would flood both
      seen?.log.debug({ remoteAddress: seen.remoteAddress }, 'connection refused: redis unreachable')
      callback(refusal(new ConnectRefusedError(3, 'redis is unreachable; connect again later', 'unavailable')), false)
      return
    }
    if (seen === undefined) {
      // aedes always runs preConnect first; without it we know nothing about this connection
      callback(refusal(new ConnectRefusedError(3, 'connection state was lost before authentication')), false)
      return
    }
    // from here on the client has its final id, made up by aedes when it sent none
    let identity: Identity | undefined
    const attempt: ConnectAttempt = {
      ...seen,
      clientId: client.id,
      log: log.child({ clientId: client.id }),
      identify: (who) => { identity = who }
    }
    settleChain(deps.authenticate, attempt, function authenticated () {
      if (identity !== undefined) connections.identify(client, identity)
      callback(null, true)
    }, function notAuthenticated (raw: unknown) {
      const err = toBrokerError(raw)
      attempt.log.warn({ err, remoteAddress: attempt.remoteAddress }, 'connection refused')
      announce(attempt, err)
      callback(refusal(err), false)
    })
  }

  return { preConnect, authenticate }
}

/** aedes reads the CONNACK return code from `returnCode`; anything but 2–5 becomes 5, not authorized. */
function refusal (err: Error): AuthenticateError {
  const returnCode = err instanceof ConnectRefusedError ? err.returnCode : 5
  return Object.assign(err, { returnCode })
}
