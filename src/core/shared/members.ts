import type { Aedes, Client } from 'aedes'
import { parseShared } from './syntax.js'

/** What the member tracking tells: a client joined or left a group, or is gone (its connection closed). */
export interface MemberEvents {
  readonly join: (client: Client, group: string, filter: string, qos: number) => void
  readonly leave: (client: Client, group: string, filter: string) => void
  readonly gone: (client: Client) => void
}

/**
 * Follow aedes for the members of shared subscriptions on this node. aedes keeps a
 * `$share/<group>/<filter>` subscription as it keeps any (it matches no topic: nothing
 * is published under `$share/`), so its lifecycle is aedes': stored with a persistent
 * session and restored on reconnect, removed by UNSUBSCRIBE and on disconnect. This reads
 * it from aedes' events: `subscribe` (the granted QoS, 128 when refused), `connackSent`
 * (a persistent session's restored subscriptions, which aedes restores without an event),
 * `unsubscribe`, and the connection's close.
 */
export function watchMembers (aedes: Aedes, events: MemberEvents): void {
  const watched = new WeakSet<Client>()
  const join = (client: Client, topic: string, qos: number): void => {
    const shared = parseShared(topic)
    if (typeof shared !== 'object' || qos > 2 || client.closed) return
    if (!watched.has(client)) {
      watched.add(client)
      client.conn.once('close', function sharedMemberGone () { events.gone(client) })
    }
    events.join(client, shared.group, shared.filter, qos)
  }
  aedes.on('subscribe', function sharedSubscribed (subs, client) {
    for (const sub of subs) join(client, sub.topic, sub.qos)
  })
  aedes.on('connackSent', function sharedRestored (packet, client) {
    if (packet.returnCode !== 0 || client.clean) return
    const held: unknown = Reflect.get(client, 'subscriptions')
    if (typeof held !== 'object' || held === null) return
    for (const [topic, sub] of Object.entries(held)) {
      const qos: unknown = typeof sub === 'object' && sub !== null ? Reflect.get(sub, 'qos') : undefined
      if (typeof qos === 'number') join(client, topic, qos)
    }
  })
  aedes.on('unsubscribe', function sharedUnsubscribed (topics, client) {
    // on close aedes unsubscribes a clean session's filters too: the close says that
    if (client.closed) return
    for (const topic of topics) {
      const shared = parseShared(topic)
      if (typeof shared === 'object') events.leave(client, shared.group, shared.filter)
    }
  })
}
