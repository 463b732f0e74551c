import { SHARE_MEMBER_PREFIX, SHARE_PREFIX } from '../reserved-topics.js'

/** A shared subscription's parts: `$share/<group>/<filter>`. */
export interface SharedFilter {
  readonly group: string
  readonly filter: string
}

/** Why a `$share/…` filter is refused. */
export type SharedSyntaxError = 'invalid_shared_group'

/**
 * The group and filter of a `$share/<group>/<filter>` subscription; `undefined` for any
 * other filter; `'invalid_shared_group'` when the group is empty or holds `+` or `#`, or
 * the filter is empty [MQTT-4.8.2-1, MQTT-4.8.2-2]. The group cannot hold `/`: the first
 * one after the group ends it.
 */
export function parseShared (topic: string): SharedFilter | SharedSyntaxError | undefined {
  if (!topic.startsWith(SHARE_PREFIX)) return topic === '$share' ? 'invalid_shared_group' : undefined
  const slash = topic.indexOf('/', SHARE_PREFIX.length)
  if (slash === -1) return 'invalid_shared_group'
  const group = topic.slice(SHARE_PREFIX.length, slash)
  const filter = topic.slice(slash + 1)
  if (group.length === 0 || filter.length === 0 || /[+#]/.test(group)) return 'invalid_shared_group'
  return { group, filter }
}

/** The filter an access check and the topic limits judge: the `<filter>` of a shared subscription, else the filter itself. */
export function checkedFilter (topic: string): string {
  const shared = parseShared(topic)
  return typeof shared === 'object' ? shared.filter : topic
}

/** A group's key among the node's groups: `$share/<group>/<filter>`, as the client subscribed (the group holds no `/`). */
export function groupKey (group: string, filter: string): string {
  return `${SHARE_PREFIX}${group}/${filter}`
}

/** The route announcing one member of a group: `$share-member/<group>/<clientId>/<filter>` (client ids hold no `/`). */
export function memberRoute (group: string, clientId: string, filter: string): string {
  return `${SHARE_MEMBER_PREFIX}${group}/${clientId}/${filter}`
}

/** A member route read back; `undefined` for any other filter. */
export function parseMemberRoute (route: string): { readonly group: string, readonly clientId: string, readonly filter: string } | undefined {
  if (!route.startsWith(SHARE_MEMBER_PREFIX)) return undefined
  const groupEnd = route.indexOf('/', SHARE_MEMBER_PREFIX.length)
  const clientEnd = groupEnd === -1 ? -1 : route.indexOf('/', groupEnd + 1)
  if (clientEnd === -1) return undefined
  return { group: route.slice(SHARE_MEMBER_PREFIX.length, groupEnd), clientId: route.slice(groupEnd + 1, clientEnd), filter: route.slice(clientEnd + 1) }
}
