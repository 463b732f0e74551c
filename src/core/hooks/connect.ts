import type { AedesOptions, AuthenticateError, Client } from 'aedes'
import { ConnectRefusedError, toBrokerError, type BrokerError } from '../errors.js'
import type { Logger } from '../logger.js'
import type { LogSampler } from '../log-sampler.js'
import type { ConnectAttempt, ConnectHandler, ConnectRefusedHandler, Identity } from '../context.js'
import type { ClientMeta, Connections } from '../transport/connections.js'
import { settleChain, tellEach } from '../pipeline/chain.js'

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
  /** Samples the refusal lines (per address: a refused client has no identity yet), shared with the other hooks. */
  readonly sampler: LogSampler
}

/**
 * Characters a client id may not hold: `+`, `#` and `/` would make `$rejections/<clientId>`
 * a filter over other clients' topics (a client `#` reading everyone's rejections) and
 * U+0000 is forbidden in every topic [MQTT-4.7.3-2]. Refused with CONNACK 2, as an
 * identifier the server does not allow [MQTT-3.1.3-9].
 */
const FORBIDDEN_IN_CLIENT_ID = /[+#/\u0000]/

/** Why `clientId` (with `clean`) is refused with CONNACK 2, if it is. */
export function clientIdProblem (clientId: string, clean: boolean): string | undefined {
  // [MQTT-3.1.3-8]: a zero-byte client id with CleanSession=0 gets CONNACK 2, then the connection closes.
  // aedes would instead make up an id and keep a session nobody can ever resume.
  if (clientId === '' && !clean) return 'a zero-byte client id requires CleanSession=1 [MQTT-3.1.3-8]'
  if (FORBIDDEN_IN_CLIENT_ID.test(clientId)) return `client id ${JSON.stringify(clientId)} holds "+", "#", "/" or U+0000, which a topic level may not`
  return undefined
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
  const identifierRejected = new WeakMap<Client, string>()
  const attempts = new WeakMap<Client, ConnectAttempt>()

  function announce (attempt: ConnectAttempt, err: BrokerError): void {
    tellEach(deps.refused, [attempt, err], (thrown, handler) => { deps.reportError(thrown, { hook: 'connectRefused', handler, clientId: attempt.clientId }) })
  }

  /** One line per address per interval (a refused login, a bad client id): a client cannot flood the log. No stack: expected. */
  function logRefused (attempt: ConnectAttempt, err: BrokerError, msg: string): void {
    const suppressed = deps.sampler.take(`address ${attempt.remoteAddress ?? ''}`)
    if (suppressed === undefined) return
    attempt.log.warn({ code: err.code, detail: err.message, remoteAddress: attempt.remoteAddress, ...(suppressed === 0 ? {} : { suppressed }) }, msg)
  }

  function preConnect (client: Client, packet: Parameters<AedesPreConnect>[1], callback: Parameters<AedesPreConnect>[2]): void {
    const problem = clientIdProblem(packet.clientId, packet.clean ?? true)
    if (problem !== undefined) identifierRejected.set(client, problem)

    const attempt = attemptOf(packet, connections.metaOf(client), log)
    attempts.set(client, attempt)
    settleChain(deps.preConnect, attempt, function connectAllowed () { callback(null, true) }, function connectRefused (raw: unknown) {
      const err = toBrokerError(raw)
      logRefused(attempt, err, 'connection refused before CONNACK')
      announce(attempt, err)
      callback(err, false)
    })
  }

  function authenticate (client: Client, _username: unknown, _password: unknown, callback: Parameters<AedesAuthenticate>[3]): void {
    const seen = attempts.get(client)
    attempts.delete(client)
    const badId = identifierRejected.get(client)
    if (badId !== undefined) {
      identifierRejected.delete(client)
      const err = new ConnectRefusedError(2, badId, 'identifier_rejected')
      if (seen !== undefined) {
        logRefused(seen, err, 'connection refused: client id not allowed')
        announce(seen, err)
      }
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
      logRefused(attempt, err, 'connection refused')
      announce(attempt, err)
      callback(refusal(err), false)
    })
  }

  return { preConnect, authenticate }
}

/** aedes reads the CONNACK return code from `returnCode`; anything but 2–5 becomes 5, not authorized. */
/** What preConnect knows of a connection: the packet as sent, and where it came from. */
function attemptOf (packet: Parameters<AedesPreConnect>[1], meta: ClientMeta | undefined, log: Logger): ConnectAttempt {
  return {
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
}

function refusal (err: Error): AuthenticateError {
  const returnCode = err instanceof ConnectRefusedError ? err.returnCode : 5
  return Object.assign(err, { returnCode })
}
