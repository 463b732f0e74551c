import { LRUCache } from 'lru-cache'
import { compileFilter, isReserved, type Identity } from '../../src/core/index.js'

/**
 * One ACL rule: the filters a role or a user may publish to and subscribe to, and
 * those it may not (`deny`). `%u` is the user name, `%c` the client id.
 */
export interface AclRule {
  readonly role?: string
  readonly user?: string
  readonly publish: readonly string[]
  readonly subscribe: readonly string[]
  /** Refused even where a grant covers them; see `Acl`. Default none. */
  readonly deny?: { readonly publish?: readonly string[], readonly subscribe?: readonly string[] }
}

/** The role of clients without credentials, when `auth.allowAnonymous` lets them in. */
export const ANONYMOUS_ROLE = 'anonymous'

type Matcher = (topic: string) => boolean

/** One deny filter, its patterns filled in: what it refuses to subscribe to and to receive. */
interface Deny {
  /** Whether it covers a whole filter (such a subscription is refused). */
  readonly covers: (filter: string) => boolean
  /** Whether it matches one topic (such a publish, or such a delivery, is refused). */
  readonly matches: Matcher
}

/** What one client may do, its rules' patterns filled in. */
interface Grants {
  readonly publish: readonly Matcher[]
  readonly subscribe: readonly string[]
  readonly denyPublish: readonly Matcher[]
  readonly denySubscribe: readonly Deny[]
}

/** Anonymous clients whose grants are kept compiled; beyond it the least recently seen are compiled again when they next act. */
const CACHED_ANONYMOUS = 10_000

/** A deny whose pattern could not be filled in safely at its first level: it refuses everything, `$` topics included. */
const DENY_ALL: Deny = { covers: () => true, matches: () => true }

/**
 * Topic ACLs (PRODUCT §6). The rules that apply to a client are those for its user
 * name and for each of its roles (`anonymous` for clients without credentials).
 *
 * - A client may publish to a topic when a `publish` filter of those rules matches it
 *   and no `deny.publish` filter does.
 * - It may subscribe to a filter when a `subscribe` filter covers it (every topic it
 *   matches, the granted one matches too) and no `deny.subscribe` filter covers it.
 * - A deny wins over every grant, whichever rule holds either: order does not matter.
 * - A granted subscription wider than a `deny.subscribe` filter (`#` while
 *   `test/nosubscribe` is denied) stays granted, but messages on the denied topics
 *   are not delivered to that client (`canReceive`, checked per message).
 * - `$` topics are only granted by filters that name their first level (`$audit/#`),
 *   as wildcards never match them; likewise a deny of `#` leaves `$audit/#` alone.
 * - `%u` and `%c` stand for the user name and the client id. A value that is missing
 *   (`%u` of an anonymous client), empty, holds `/`, `+`, `#` or U+0000, or would start
 *   the filter with `$`, would change what the filter means: a grant using it grants
 *   nothing, and a deny using it denies more, everything from the level holding the
 *   pattern down (`devices/%c/secret` → `devices/#`; at the first level, everything).
 */
export class Acl {
  readonly #rules: readonly AclRule[]
  /** An authenticated client's grants live as long as its identity, which is one per connection. */
  readonly #byIdentity = new WeakMap<Identity, Grants>()
  readonly #anonymous = new LRUCache<string, Grants>({ max: CACHED_ANONYMOUS })
  /** Whether any rule has `deny.subscribe`: only then must deliveries be checked. */
  readonly filtersDeliveries: boolean

  constructor (rules: readonly AclRule[]) {
    this.#rules = rules
    this.filtersDeliveries = rules.some((rule) => (rule.deny?.subscribe?.length ?? 0) > 0)
  }

  canPublish (identity: Identity | undefined, clientId: string, topic: string): boolean {
    const grants = this.#grants(identity, clientId)
    return grants.publish.some((matches) => matches(topic)) && !grants.denyPublish.some((matches) => matches(topic))
  }

  canSubscribe (identity: Identity | undefined, clientId: string, filter: string): boolean {
    const grants = this.#grants(identity, clientId)
    return grants.subscribe.some((granted) => covers(granted, filter)) && !grants.denySubscribe.some((deny) => deny.covers(filter))
  }

  /** Whether a message on `topic` may be delivered to the client, which subscribed to a filter matching it: no `deny.subscribe` filter matches it. */
  canReceive (identity: Identity | undefined, clientId: string, topic: string): boolean {
    const denied = this.#grants(identity, clientId).denySubscribe
    // most clients of a broker with deny rules have none of their own: no loop
    return denied.length === 0 || !denied.some((deny) => deny.matches(topic))
  }

  #grants (identity: Identity | undefined, clientId: string): Grants {
    const cached = identity === undefined ? this.#anonymous.get(clientId) : this.#byIdentity.get(identity)
    if (cached !== undefined) return cached
    const roles = identity?.roles ?? [ANONYMOUS_ROLE]
    const rules = this.#rules.filter((rule) =>
      (rule.user !== undefined && identity !== undefined && rule.user === identity.username) ||
      (rule.role !== undefined && roles.includes(rule.role)))
    const username = identity?.username
    const fill = (filters: readonly string[] | undefined): string[] => (filters ?? []).flatMap((filter) => {
      const filled = substitute(filter, username, clientId)
      return filled === undefined ? [] : [filled]
    })
    const grants: Grants = {
      publish: rules.flatMap((rule) => fill(rule.publish)).map((filter) => compileFilter(filter)),
      subscribe: rules.flatMap((rule) => fill(rule.subscribe)),
      denyPublish: rules.flatMap((rule) => rule.deny?.publish ?? []).map((filter) => denyOf(filter, username, clientId).matches),
      denySubscribe: rules.flatMap((rule) => rule.deny?.subscribe ?? []).map((filter) => denyOf(filter, username, clientId))
    }
    if (identity === undefined) this.#anonymous.set(clientId, grants)
    else this.#byIdentity.set(identity, grants)
    return grants
  }
}

/** Whether a value may stand in a filter level: present, not empty, no separator, wildcard or NUL. */
function safe (value: string | undefined): value is string {
  return value !== undefined && value !== '' && !/[/+#\u0000]/.test(value)
}

/** One level with `%u` and `%c` filled in; `undefined` when a value it needs is not `safe`, or the level would start a filter with `$`. */
function fillLevel (level: string, first: boolean, username: string | undefined, clientId: string): string | undefined {
  if (!level.includes('%')) return level
  if (level.includes('%u') && !safe(username)) return undefined
  if (level.includes('%c') && !safe(clientId)) return undefined
  // one pass: a user name "%c" must not become the client id
  const filled = level.replace(/%[uc]/g, (pattern) => pattern === '%u' ? username ?? '' : clientId)
  // a client id "$audit" must not turn `%c/#` into a grant of `$audit/#`
  if (first && isReserved(filled) && !isReserved(level)) return undefined
  return filled
}

/** A grant's `filter` with `%u` and `%c` filled in; `undefined` (it grants nothing) when a level cannot be filled safely. */
function substitute (filter: string, username: string | undefined, clientId: string): string | undefined {
  if (!filter.includes('%')) return filter
  const levels: string[] = []
  for (const [i, level] of filter.split('/').entries()) {
    const filled = fillLevel(level, i === 0, username, clientId)
    if (filled === undefined) return undefined
    levels.push(filled)
  }
  return levels.join('/')
}

/**
 * A deny `filter` with `%u` and `%c` filled in. A level that cannot be filled safely
 * is replaced, with all below it, by `#`: every topic the pattern could stand for,
 * whatever the value, is still denied (more, never less). At the first level that is
 * everything.
 */
function denyOf (filter: string, username: string | undefined, clientId: string): Deny {
  const levels: string[] = []
  if (filter.includes('%')) {
    for (const [i, level] of filter.split('/').entries()) {
      const filled = fillLevel(level, i === 0, username, clientId)
      if (filled === undefined) {
        if (i === 0) return DENY_ALL
        levels.push('#')
        break
      }
      levels.push(filled)
    }
  }
  const denied = levels.length === 0 ? filter : levels.join('/')
  return { covers: (asked) => covers(denied, asked), matches: compileFilter(denied) }
}

/** Whether every topic `filter` matches is matched by `granted` too. */
export function covers (granted: string, filter: string): boolean {
  const g = granted.split('/')
  const f = filter.split('/')
  // a wildcard first level never matches a `$` topic; a `$` grant covers only `$` filters of its own level
  if ((g[0] === '+' || g[0] === '#') && isReserved(f[0] ?? '')) return false
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
