/**
 * The broker's own topics. Every topic starting with `$` is reserved (MQTT 3.1.1
 * §4.7.2): clients never publish there, and a filter starting with a wildcard never
 * matches one. These are the prefixes the broker uses, named once: the dashboard's
 * bundle imports them too, so this module imports nothing.
 */

/** Where dead-letter records go: `$DLQ/<original topic>`. */
export const DLQ_PREFIX = '$DLQ/'
/** Where a discarded publish goes: `$DISCARD/<original topic>`, which nobody may read. */
export const DISCARD_PREFIX = '$DISCARD/'
/** Where a client finds the dead-letter records of its own refused publishes: `$rejections/<clientId>`. */
export const REJECTIONS_PREFIX = '$rejections/'
/** The audit's live mirror, as `ctx.listening` takes it: the first level of `$audit/<topic>`. */
export const AUDIT_LEVEL = '$audit'
/** Where audit records go: `$audit/<original topic>`. */
export const AUDIT_PREFIX = `${AUDIT_LEVEL}/`
/** The broker's own state, which aedes guards too: `$SYS/ce-broker/<nodeId>/stats`. */
export const SYS_PREFIX = '$SYS/'
/** Where each node's stats go: `$SYS/ce-broker/<nodeId>/stats`; `$SYS/ce-broker/+/stats` reads every node's. */
export const STATS_PREFIX = `${SYS_PREFIX}ce-broker/`

/** A shared subscription: `$share/<group>/<filter>` (MQTT 5 §4.8.2, also on 3.1.1 as EMQX, HiveMQ and Mosquitto take it). */
export const SHARE_PREFIX = '$share/'
/**
 * With Redis, one route per member of a shared subscription: `$share-member/<group>/<clientId>/<filter>`.
 * Never published to; the route table carries who is a member of which group on which node.
 */
export const SHARE_MEMBER_PREFIX = '$share-member/'

/** Whether `topic` (or a filter) is reserved for the broker: it starts with `$`. */
export function isReserved (topic: string): boolean {
  // a char code, not startsWith: this runs on every publish and every filter match
  return topic.charCodeAt(0) === 36 /* $ */
}

/**
 * Whether `filter` is the one topic `$rejections/<clientId>`: compared as topics, not
 * strings, so that no wildcard in it (nor in a client id, which CONNECT refuses anyway)
 * can widen it over other clients' rejections.
 */
export function isOwnRejections (filter: string, clientId: string): boolean {
  return filter === REJECTIONS_PREFIX + clientId && !/[+#]/.test(filter) && !clientId.includes('/')
}

/**
 * Why `clientId` may not read `filter`, or `undefined` if it may: discarded messages
 * are read by nobody, and a client reads its own rejections and no one else's (a
 * wildcard would read others').
 */
export function unreadable (filter: string, clientId: string): 'discarded' | 'others_rejections' | 'share_member_route' | undefined {
  if (filter.startsWith(DISCARD_PREFIX)) return 'discarded'
  // the routes a node announces for its shared-subscription members: a client's filter there would pose as one
  if (filter.startsWith(SHARE_MEMBER_PREFIX)) return 'share_member_route'
  if (filter.startsWith(REJECTIONS_PREFIX) && !isOwnRejections(filter, clientId)) return 'others_rejections'
  return undefined
}

/** The first level of a filter when it starts with `$`, else `undefined`: `+` and `#` never match a `$` topic [MQTT-4.7.2-1]. */
export function systemLevel (filter: string): string | undefined {
  if (!isReserved(filter)) return undefined
  const slash = filter.indexOf('/')
  return slash === -1 ? filter : filter.slice(0, slash)
}
