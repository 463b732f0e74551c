import { ConfigError, topicFilterProblem } from '../../src/core/index.js'
import { ANONYMOUS_ROLE } from './acl.js'
import type { AclRuleInput, AuthJwt, AuthUser } from './config.js'

/** The parts of `auth` that decide whom a rule can apply to. */
export interface AclSetting {
  readonly users: readonly AuthUser[]
  readonly acl: readonly AclRuleInput[]
  readonly allowAnonymous: boolean
  readonly jwt?: AuthJwt
}

/**
 * Whether clients without credentials get in: with `allowAnonymous`, and while
 * nobody must prove who they are (no users, no JWT), as PRODUCT §6 says.
 */
export function anonymousCanConnect (auth: AclSetting): boolean {
  return auth.allowAnonymous || (auth.users.length === 0 && auth.jwt === undefined)
}

/**
 * The rules, each checked: it names a role or a user, its filters (`deny` ones too) are
 * valid, and it can apply to somebody. A rule that never can is a mistake the broker
 * would otherwise keep silently, so start-up stops with a `ConfigError` naming
 * `auth.acl.<i>` and why:
 * - `user` not in `auth.users` while no JWT is configured (only a token could name it);
 * - `role` no user has, while no JWT is configured (only a token could carry it), unless
 *   it is `anonymous` and clients without credentials can connect;
 * - `role: anonymous` while they cannot (users or a JWT exist and `allowAnonymous` is
 *   false), unless a user has that role.
 *
 * @param source where the setting came from, for the error (`config`, `auth plugin`)
 */
export function checkAclRules (auth: AclSetting, source: string): AclRuleInput[] {
  const users = new Set(auth.users.map((user) => user.username))
  const roles = new Set(auth.users.flatMap((user) => user.roles))
  const anonymous = anonymousCanConnect(auth)
  return auth.acl.map((rule, i) => {
    const path = `auth.acl.${i}`
    if ((rule.role === undefined) === (rule.user === undefined)) throw new ConfigError(source, path, 'must name either a role or a user')
    const filters: Array<[string, readonly string[] | undefined]> = [
      ['publish', rule.publish], ['subscribe', rule.subscribe], ['deny.publish', rule.deny?.publish], ['deny.subscribe', rule.deny?.subscribe]
    ]
    for (const [action, list] of filters) {
      list?.forEach((filter, j) => {
        const problem = topicFilterProblem(filter)
        if (problem !== undefined) throw new ConfigError(source, `${path}.${action}.${j}`, `${problem}, got ${JSON.stringify(filter)}`)
      })
    }
    if (rule.user !== undefined && auth.jwt === undefined && !users.has(rule.user)) {
      throw new ConfigError(source, path, `can never apply: user ${JSON.stringify(rule.user)} is not in auth.users and no auth.jwt is configured to name it`)
    }
    if (rule.role === ANONYMOUS_ROLE) {
      if (!anonymous && !roles.has(ANONYMOUS_ROLE)) {
        throw new ConfigError(source, path, `can never apply: it is for clients without credentials, which cannot connect (users or a JWT are configured and auth.allowAnonymous is false)`)
      }
    } else if (rule.role !== undefined && auth.jwt === undefined && !roles.has(rule.role)) {
      throw new ConfigError(source, path, `can never apply: no user in auth.users has role ${JSON.stringify(rule.role)} and no auth.jwt is configured to grant it`)
    }
    return rule
  })
}
