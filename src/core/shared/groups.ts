import type { Client } from 'aedes'
import { QlobberDedup } from 'qlobber'
import { isReserved } from '../reserved-topics.js'
import { groupKey } from './syntax.js'

/** What an MQTT subscription matches, so a group's filter matches exactly what an ordinary subscription would [MQTT-4.7.1-3]. */
const MATCHING = { separator: '/', wildcard_one: '+', wildcard_some: '#', match_empty_levels: true } as const

/** One member of a group: a client on this node (`client` set) or on another node. */
export interface Member {
  readonly node: string
  readonly clientId: string
  /** This node's client, for a member here. */
  readonly client: Client | undefined
  /** The QoS the member subscribed with (a member on another node: its node applies it). */
  qos: number
}

/** One shared subscription group: a name and a filter, and its members in round-robin order. */
export class Group {
  readonly members: Member[] = []
  #next = 0

  constructor (readonly name: string, readonly filter: string, readonly key: string) {}

  /** Whether a `$` topic can match the filter: not when the filter starts with a wildcard [MQTT-4.7.2-1]. */
  get matchesReserved (): boolean {
    return isReserved(this.filter)
  }

  /**
   * The first member from the one whose turn it is that `accept` takes; the turn then
   * passes to the member after it (round robin over those taken).
   */
  pick (accept: (member: Member) => boolean): Member | undefined {
    const members = this.members
    const n = members.length
    for (let i = 0; i < n; i++) {
      const index = (this.#next + i) % n
      const member = members[index]
      if (member === undefined || !accept(member)) continue
      this.#next = (index + 1) % n
      return member
    }
    return undefined
  }

  add (member: Member): void {
    this.members.push(member)
  }

  /** Remove the members `which` selects; the turn stays with the member that had it, or the one after. */
  remove (which: (member: Member) => boolean): Member[] {
    const removed: Member[] = []
    for (let i = this.members.length - 1; i >= 0; i--) {
      const member = this.members[i]
      if (member === undefined || !which(member)) continue
      this.members.splice(i, 1)
      removed.push(member)
      if (i < this.#next) this.#next--
    }
    return removed
  }
}

/**
 * Every shared subscription group this node knows: its own members, and with Redis the
 * other nodes' (from their member routes). A group exists while it has a member anywhere.
 */
export class Groups {
  readonly #groups = new Map<string, Group>()
  readonly #matcher = new QlobberDedup(MATCHING)

  get size (): number {
    return this.#groups.size
  }

  get (key: string): Group | undefined {
    return this.#groups.get(key)
  }

  values (): IterableIterator<Group> {
    return this.#groups.values()
  }

  /** The groups whose filter matches `topic`. */
  matching (topic: string): Group[] {
    if (this.#groups.size === 0) return []
    const groups: Group[] = []
    const reserved = isReserved(topic)
    for (const key of this.#matcher.match(topic)) {
      const group = this.#groups.get(String(key))
      if (group !== undefined && (!reserved || group.matchesReserved)) groups.push(group)
    }
    return groups
  }

  /** Add `member` to the group `name` of `filter`, made if missing; a member already there (same node and client) has its QoS updated. */
  join (name: string, filter: string, member: Member): Group {
    const key = groupKey(name, filter)
    let group = this.#groups.get(key)
    if (group === undefined) {
      group = new Group(name, filter, key)
      this.#groups.set(key, group)
      this.#matcher.add(filter, key)
    }
    const held = group.members.find((m) => m.node === member.node && m.clientId === member.clientId && m.client === member.client)
    if (held === undefined) group.add(member)
    else held.qos = member.qos
    return group
  }

  /** Remove the members `which` selects from the group `key`; the group goes with its last member. */
  leave (key: string, which: (member: Member) => boolean): Member[] {
    const group = this.#groups.get(key)
    if (group === undefined) return []
    const removed = group.remove(which)
    if (group.members.length === 0) {
      this.#groups.delete(key)
      this.#matcher.remove(group.filter, key)
    }
    return removed
  }
}
