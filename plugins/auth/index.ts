import { Counter } from 'prom-client'
import {
  ConnectRefusedError, PublishNotAuthorizedError, REJECTIONS_PREFIX, SubscribeNotAuthorizedError, addressKey, definePlugin,
  type ConnectAttempt, type PluginContext, type PublishAttempt, type Settings, type SubscribeAttempt
} from '../../src/core/index.js'
import { Acl } from './acl.js'
import { authSection } from './config.js'
import { loadCredentials, type Refuse } from './credentials.js'
import { LoginLimiter } from './login-limiter.js'
import { checkAclRules } from './rules.js'
import { MemoryAuthState, RedisAuthState, type AuthState } from './state.js'

export { hashPassword, verifyPassword } from './passwords.js'
export { Acl, ANONYMOUS_ROLE, covers, type AclRule } from './acl.js'
export { anonymousCanConnect, checkAclRules, type AclSetting } from './rules.js'
export { SubscribeNotAuthorizedError } from '../../src/core/index.js'

/** Options of the auth plugin: the `auth` section of the config (its `apiKeys` are the core's). */
export type AuthOptions = Settings<typeof authSection.schema>

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
export const auth = definePlugin<AuthOptions>({ name: 'auth', dependsOn: ['dead-letter'], sections: [authSection], setup: setupAuth })

async function setupAuth (ctx: PluginContext, opts: AuthOptions): Promise<undefined> {
  const acl = new Acl(checkAclRules(opts, 'auth plugin'))
  const credentials = await loadCredentials(opts)
  /** Failed logins per address, and the user each client id belongs to: a session is its user's, nobody else's to take over or resume. */
  const state: AuthState = ctx.redis === undefined ? new MemoryAuthState(opts.loginFailures.windowMs) : new RedisAuthState(ctx.redis, opts.loginFailures.windowMs)
  const limiter = new LoginLimiter(state, opts.loginFailures.max)
  const refusals = new Counter({ name: 'ce_broker_auth_refusals_total', help: 'CONNECTs refused by authentication, by reason', labelNames: ['reason'] as const, registers: [ctx.metrics] })
  const denials = new Counter({ name: 'ce_broker_acl_denials_total', help: 'Publishes, subscriptions and deliveries the ACL refuses (no grant, or a deny)', labelNames: ['action'] as const, registers: [ctx.metrics] })

  /** How `attempt` is refused: counted by reason, and a bad password counts against its address. */
  function refuserOf (attempt: ConnectAttempt): Refuse {
    return function refuse (returnCode, reason, message) {
      refusals.inc({ reason })
      const address = addressKey(attempt.remoteAddress)
      if (returnCode === 4 && address !== undefined) {
        state.fail(address).catch((err: unknown) => { ctx.reportError(err, { op: 'count failed login', address }) })
      }
      return new ConnectRefusedError(returnCode, message, reason)
    }
  }

  ctx.hooks.authenticate(async function checkCredentials (attempt: ConnectAttempt): Promise<void> {
    const refuse = refuserOf(attempt)
    const identity = await limiter.check(attempt.remoteAddress, refuse, async () => await credentials.identify(attempt, refuse))
    // a will is published for the client when it dies, maybe by another node: its topic is checked now
    if (attempt.willTopic !== undefined && !acl.canPublish(identity, attempt.clientId, attempt.willTopic)) {
      throw refuse(5, 'will_not_authorized', `the will's topic "${attempt.willTopic}" is not granted`)
    }
    // a client id (and its session) belongs to the user that used it; another may not take it over or resume it
    if (!await state.claim(attempt.clientId, identity?.username ?? '')) {
      throw refuse(2, 'client_id_taken', `client id ${JSON.stringify(attempt.clientId)} belongs to another user`)
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

  ctx.log.info({ users: credentials.users, rules: opts.acl.length, jwt: credentials.jwt, allowAnonymous: opts.allowAnonymous, open: credentials.open, filtersDeliveries: acl.filtersDeliveries }, 'auth ready')
  return undefined
}
