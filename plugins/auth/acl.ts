import { LRUCache } from 'lru-cache'
import { compileFilter, type Identity } from '../../src/index.js'

/** One ACL rule: the filters a role or a user may publish to and subscribe to. `%u` is the user name, `%c` the client id. */
export interface AclRule {
  readonly role?: string
  readonly user?: string
  readonly publish: readonly string[]
  readonly subscribe: readonly string[]
}

/** The role of clients without credentials, when `auth.allowAnonymous` lets them in. */
export const ANONYMOUS_ROLE = 'anonymous'

/** What one client may do, its rules' patterns filled in. */
interface Grants {
  readonly publish: ReadonlyArray<(topic: string) => boolean>
  readonly subscribe: readonly string[]
}

/** Anonymous clients whose grants are kept compiled; beyond it the least recently seen are compiled again when they next act. */
const CACHED_ANONYMOUS = 10_000

/**
 * Topic ACLs (PRODUCT §6): a client may publish to a topic, or subscribe to a filter,
 * when a rule for its user name or one of its roles grants it. A subscription is
 * granted when a granted filter covers it: every topic it matches, the granted one
 * matches too. `$` topics are only granted by filters that name their first level
 * (`$audit/#`), as wildcards never match them. `%u` and `%c` in a filter stand for
 * the user name and the client id; a value holding `/`, `+` or `#` would widen the
 * filter, so a pattern using it grants nothing.
 */
export class Acl {
  readonly #rules: readonly AclRule[]
  /** An authenticated client's grants live as long as its identity, which is one per connection. */
  readonly #byIdentity = new WeakMap<Identity, Grants>()
  readonly #anonymous = new LRUCache<string, Grants>({ max: CACHED_ANONYMOUS })

  constructor (rules: readonly AclRule[]) {
    this.#rules = rules
  }

  canPublish (identity: Identity | undefined, clientId: string, topic: string): boolean {
    return this.#grants(identity, clientId).publish.some((matches) => matches(topic))
  }

  canSubscribe (identity: Identity | undefined, clientId: string, filter: string): boolean {
    return this.#grants(identity, clientId).subscribe.some((granted) => covers(granted, filter))
  }

  #grants (identity: Identity | undefined, clientId: string): Grants {
    const cached = identity === undefined ? this.#anonymous.get(clientId) : this.#byIdentity.get(identity)
    if (cached !== undefined) return cached
    const roles = identity?.roles ?? [ANONYMOUS_ROLE]
    const rules = this.#rules.filter((rule) =>
      (rule.user !== undefined && identity !== undefined && rule.user === identity.username) ||
      (rule.role !== undefined && roles.includes(rule.role)))
    const fill = (filters: readonly string[]): string[] => filters.flatMap((filter) => {
      const filled = substitute(filter, identity?.username, clientId)
      return filled === undefined ? [] : [filled]
    })
    const grants: Grants = {
      publish: rules.flatMap((rule) => fill(rule.publish)).map((filter) => compileFilter(filter)),
      subscribe: rules.flatMap((rule) => fill(rule.subscribe))
    }
    if (identity === undefined) this.#anonymous.set(clientId, grants)
    else this.#byIdentity.set(identity, grants)
    return grants
  }
}

/** `filter` with `%u` and `%c` filled in; `undefined` when a value it needs is missing or would act as a wildcard or separator. */
function substitute (filter: string, username: string | undefined, clientId: string): string | undefined {
  if (!filter.includes('%')) return filter
  const unsafe = (value: string | undefined): boolean => value === undefined || value === '' || /[/+#]/.test(value)
  if (filter.includes('%u') && unsafe(username)) return undefined
  if (filter.includes('%c') && unsafe(clientId)) return undefined
  // one pass: a user name "%c" must not become the client id
  return filter.replace(/%[uc]/g, (pattern) => pattern === '%u' ? username ?? '' : clientId)
}

/** Whether every topic `filter` matches is matched by `granted` too. */
export function covers (granted: string, filter: string): boolean {
  const g = granted.split('/')
  const f = filter.split('/')
  // a wildcard first level never matches a `$` topic; a `$` grant covers only `$` filters of its own level
  if ((g[0] === '+' || g[0] === '#') && (f[0] ?? '').startsWith('$')) return false
  for (let i = 0; i < g.length; i++) {
    const level = g[i]
    if (level === '#') return true
    const asked = f[i]
    if (asked === undefined) return false
    if (asked === '#') return false
    if (level === '+') continue
    if (asked === '+' || asked !== level) return false
  }
  return f.length === g.length
}
