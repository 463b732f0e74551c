import { readFile } from 'node:fs/promises'
import { createLocalJWKSet, jwtVerify, type JWTPayload, type JWTVerifyOptions } from 'jose'
import { Counter } from 'prom-client'
import {
  ConfigError, ConnectRefusedError, PublishNotAuthorizedError, REJECTIONS_PREFIX, SubscribeNotAuthorizedError, addressKey, definePlugin,
  type ConnectAttempt, type Identity, type PublishAttempt, type SubscribeAttempt
} from '../../src/core/index.js'
import { ANONYMOUS_ROLE, Acl } from './acl.js'
import { DECOY_HASH, hashProblem, verifyPassword } from './passwords.js'
import { checkAclRules } from './rules.js'
import { MemoryAuthState, RedisAuthState, type AuthState } from './state.js'
import type { AclRuleInput, AuthJwt, AuthUser } from './config.js'

export { hashPassword, verifyPassword } from './passwords.js'
export { Acl, ANONYMOUS_ROLE, covers, type AclRule } from './acl.js'
export { anonymousCanConnect, checkAclRules, type AclSetting } from './rules.js'
export { SubscribeNotAuthorizedError } from '../../src/core/index.js'

/** Options of the auth plugin: `auth` of the config. */
export interface AuthOptions {
  readonly users: readonly AuthUser[]
  readonly acl: readonly AclRuleInput[]
  readonly allowAnonymous: boolean
  readonly jwt?: AuthJwt
  readonly loginFailures: { readonly max: number, readonly windowMs: number }
}

/** Password checks running at once (each an scrypt on libuv's pool); beyond it CONNECTs get CONNACK 3 until one ends. */
const MAX_CONCURRENT_CHECKS = 16
/** The shape of a compact JWS: three base64url parts. */
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/

/**
 * MQTT authentication and topic ACLs (PRODUCT §6), loaded once users, JWTs or ACL
 * rules are configured.
 *
 * - With no users and no JWT nobody has credentials to check: every client connects,
 *   whatever it sends, as an anonymous client with the role `anonymous`, and the ACL
 *   applies to it.
 * - A known user's password is checked against its scrypt hash, in constant time;
 *   an unknown user is checked against a decoy hash, so both take as long. Either
 *   failure answers CONNACK 4. A password shaped like a JWT, when `jwt` is set, is
 *   verified with jose; its claims name the user and the roles.
 * - No credentials: CONNACK 5, unless `allowAnonymous` lets the client in with the
 *   role `anonymous`.
 * - An address with `loginFailures.max` failures within `windowMs` is refused
 *   (CONNACK 5) without a check until the window ends. Every refusal is logged,
 *   counted and, through the `connectRefused` hook, audited.
 * - A client id belongs to the user that used it (CONNACK 2 for anyone else). With
 *   `--redis`, failures and owners are kept in Redis for every node (`AuthState`).
 * - Subscriptions and publishes need a grant and no deny (see `Acl`): a refused filter
 *   gets SUBACK 0x80; a refused publish is acked, reaches no one, is told on
 *   `$rejections/<clientId>` and audited as `not_authorized`. When a rule has
 *   `deny.subscribe`, a `forward` hook also keeps messages on denied topics from
 *   clients whose wider subscription matches them; without such rules no hook runs
 *   per delivery. `$rejections/<own id>` is always granted and always delivered.
 *   HTTP and broker-side publishes are not MQTT clients' and are left to the API keys.
 * - A rule that can never apply stops start-up (`checkAclRules`).
 */
export const auth = definePlugin<AuthOptions>('auth', async (ctx, opts) => {
  const users = checkUsers(opts.users)
  const acl = new Acl(checkAclRules(opts, 'auth plugin'))
  /** Nobody must prove who they are: credentials are not checked and everyone is anonymous. */
  const open = opts.users.length === 0 && opts.jwt === undefined
  const verifyJwt = opts.jwt === undefined ? undefined : await jwtVerifier(opts.jwt)
  /** Failed logins per address, and the user each client id belongs to: a session is its user's, nobody else's to take over or resume. */
  const state: AuthState = ctx.redis === undefined ? new MemoryAuthState(opts.loginFailures.windowMs) : new RedisAuthState(ctx.redis, opts.loginFailures.windowMs)
  /** Checks running per address: they count against the limit before they end, so parallel guesses do not all get through. */
  const pending = new Map<string, number>()
  let checking = 0
  const refusals = new Counter({ name: 'ce_broker_auth_refusals_total', help: 'CONNECTs refused by authentication, by reason', labelNames: ['reason'] as const, registers: [ctx.metrics] })
  const denials = new Counter({ name: 'ce_broker_acl_denials_total', help: 'Publishes, subscriptions and deliveries the ACL refuses (no grant, or a deny)', labelNames: ['action'] as const, registers: [ctx.metrics] })

  function refuse (attempt: ConnectAttempt, returnCode: 2 | 3 | 4 | 5, reason: string, message: string): ConnectRefusedError {
    refusals.inc({ reason })
    const address = addressKey(attempt.remoteAddress)
    if (returnCode === 4 && address !== undefined) {
      state.fail(address).catch((err: unknown) => { ctx.reportError(err, { op: 'count failed login', address }) })
    }
    return new ConnectRefusedError(returnCode, message, reason)
  }

  /** Who the credentials say the client is; refuses (CONNACK 4 or 5) when they say nothing good. */
  async function identityOf (attempt: ConnectAttempt): Promise<Identity | undefined> {
    const { username, password } = attempt
    // as without the plugin: anonymous access while no users are configured (PRODUCT §6)
    if (open) return undefined
    if (username === undefined && password === undefined) {
      if (opts.allowAnonymous) return undefined
      throw refuse(attempt, 5, 'no_credentials', 'credentials are required')
    }
    const secret = password ?? Buffer.alloc(0)
    // the password's shape alone picks the check, so its duration tells nothing of which user names exist
    if (verifyJwt !== undefined && JWT_SHAPE.test(secret.toString('latin1'))) {
      const identity = await verifyJwt(secret.toString('latin1'), username).catch((err: unknown) => {
        throw refuse(attempt, 4, 'bad_credentials', `the token was refused: ${err instanceof Error ? err.message : String(err)}`)
      })
      // a token never speaks for a configured user: their rules are theirs
      if (users.has(identity.username)) throw refuse(attempt, 4, 'bad_credentials', `the token names ${JSON.stringify(identity.username)}, a configured user`)
      return identity
    }
    const user = username === undefined ? undefined : users.get(username)
    // an unknown user costs the same scrypt as a known one: timing tells nothing
    const matches = await verifyPassword(secret, user?.password ?? DECOY_HASH)
    if (user === undefined || !matches) throw refuse(attempt, 4, 'bad_credentials', 'bad user name or password')
    return { username: user.username, roles: user.roles }
  }

  ctx.hooks.authenticate(async function checkCredentials (attempt: ConnectAttempt): Promise<void> {
    const address = addressKey(attempt.remoteAddress)
    if (checking >= MAX_CONCURRENT_CHECKS) throw refuse(attempt, 3, 'busy', 'too many logins are being checked: try again')
    // the slot is taken before the first await: parallel guesses see each other
    const running = address === undefined ? 0 : pending.get(address) ?? 0
    checking++
    if (address !== undefined) pending.set(address, running + 1)
    let identity: Identity | undefined
    try {
      const failed = address === undefined ? 0 : await state.failures(address)
      if (failed >= opts.loginFailures.max) {
        throw refuse(attempt, 5, 'rate_limited', `too many failed logins from ${attempt.remoteAddress ?? ''}: try again later`)
      }
      // checks still running count against the limit: parallel guesses cannot all get through
      if (failed + running >= opts.loginFailures.max) throw refuse(attempt, 3, 'busy', 'logins from this address are being checked: try again')
      identity = await identityOf(attempt)
    } finally {
      checking--
      if (address !== undefined) {
        const left = (pending.get(address) ?? 1) - 1
        if (left === 0) pending.delete(address)
        else pending.set(address, left)
      }
    }
    // a will is published for the client when it dies, maybe by another node: its topic is checked now
    if (attempt.willTopic !== undefined && !acl.canPublish(identity, attempt.clientId, attempt.willTopic)) {
      throw refuse(attempt, 5, 'will_not_authorized', `the will's topic "${attempt.willTopic}" is not granted`)
    }
    // a client id (and its session) belongs to the user that used it; another may not take it over or resume it
    if (!await state.claim(attempt.clientId, identity?.username ?? '')) {
      throw refuse(attempt, 2, 'client_id_taken', `client id ${JSON.stringify(attempt.clientId)} belongs to another user`)
    }
    if (identity !== undefined) attempt.identify(identity)
  })

  ctx.hooks.authorizeSubscribe(function checkSubscribeAcl (attempt: SubscribeAttempt): void {
    if (attempt.topic === REJECTIONS_PREFIX + attempt.clientId) return
    if (acl.canSubscribe(attempt.identity, attempt.clientId, attempt.topic)) return
    denials.inc({ action: 'subscribe' })
    throw new SubscribeNotAuthorizedError(attempt.topic, attempt.identity?.username)
  })

  ctx.hooks.authorizePublish(function checkPublishAcl (attempt: PublishAttempt): undefined {
    if (attempt.origin === 'http' || attempt.origin === 'internal') return undefined
    if (acl.canPublish(attempt.identity, attempt.clientId ?? '', attempt.topic)) return undefined
    denials.inc({ action: 'publish' })
    throw new PublishNotAuthorizedError(attempt.topic, attempt.identity?.username)
  })

  // only deny.subscribe filters can withhold a message a subscription matches: without them no per-delivery check
  if (acl.filtersDeliveries) {
    ctx.hooks.forward(function checkDeliveryAcl (delivery): boolean {
      if (delivery.topic === REJECTIONS_PREFIX + delivery.clientId) return true
      if (acl.canReceive(delivery.identity, delivery.clientId, delivery.topic)) return true
      denials.inc({ action: 'deliver' })
      return false
    })
  }

  ctx.log.info({ users: users.size, rules: opts.acl.length, jwt: verifyJwt !== undefined, allowAnonymous: opts.allowAnonymous, open, filtersDeliveries: acl.filtersDeliveries }, 'auth ready')
}, { dependsOn: ['dead-letter'] })

/** Users by name, each hash checked: a plain password in the config stops start-up, naming its place. */
function checkUsers (users: readonly AuthUser[]): Map<string, AuthUser> {
  const byName = new Map<string, AuthUser>()
  users.forEach((user, i) => {
    const problem = hashProblem(user.password)
    if (problem !== undefined) throw new ConfigError('auth plugin', `auth.users.${i}.password`, problem)
    if (byName.has(user.username)) throw new ConfigError('auth plugin', `auth.users.${i}.username`, `repeats ${JSON.stringify(user.username)}`)
    byName.set(user.username, user)
  })
  return byName
}

/** Verifies a JWT password and reads the identity from its claims; the CONNECT's user name, when given, must be the token's. */
async function jwtVerifier (config: AuthJwt): Promise<(token: string, username: string | undefined) => Promise<Identity>> {
  if ((config.secret === undefined) === (config.jwksFile === undefined)) {
    throw new ConfigError('auth plugin', 'auth.jwt', 'needs exactly one of secret and jwksFile')
  }
  // a token without an expiry would be good forever
  const options: JWTVerifyOptions = {
    requiredClaims: ['exp'],
    ...(config.issuer === undefined ? {} : { issuer: config.issuer }),
    ...(config.audience === undefined ? {} : { audience: config.audience })
  }
  let verify: (token: string) => Promise<JWTPayload>
  if (config.secret !== undefined) {
    const key = new TextEncoder().encode(config.secret)
    verify = async (token) => (await jwtVerify(token, key, { ...options, algorithms: ['HS256'] })).payload
  } else {
    const file = config.jwksFile ?? ''
    let keys: ReturnType<typeof createLocalJWKSet>
    try {
      keys = createLocalJWKSet(JSON.parse(await readFile(file, 'utf8')) as Parameters<typeof createLocalJWKSet>[0])
    } catch (err: unknown) {
      throw new ConfigError('auth plugin', 'auth.jwt.jwksFile', `cannot be read as a JSON Web Key Set: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
    }
    verify = async (token) => (await jwtVerify(token, keys, options)).payload
  }
  const usernameClaim = config.usernameClaim ?? 'sub'
  const rolesClaim = config.rolesClaim ?? 'roles'
  return async function identityOf (token, username) {
    const claims = await verify(token)
    const name = claims[usernameClaim]
    if (typeof name !== 'string' || name === '') throw new Error(`the token has no "${usernameClaim}" claim`)
    if (username !== undefined && username !== '' && username !== name) throw new Error(`the token is ${JSON.stringify(name)}'s, not ${JSON.stringify(username)}'s`)
    const raw = claims[rolesClaim]
    const roles = typeof raw === 'string' ? [raw] : Array.isArray(raw) ? raw.filter((r): r is string => typeof r === 'string') : []
    // a token never makes a client anonymous: that role is for clients without credentials
    return { username: name, roles: roles.filter((role) => role !== ANONYMOUS_ROLE) }
  }
}

