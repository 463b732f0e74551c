import type { Client } from 'aedes'
import type { MQEmitter } from 'mqemitter'
import type { Registry } from 'prom-client'
import type { SharedLink } from '../cluster/emitter.js'
import type { Logger } from '../logger.js'
import type { LogSampler } from '../log-sampler.js'
import { DISCARD_PREFIX } from '../reserved-topics.js'
import { Groups, type Group, type Member } from './groups.js'
import type { MemberEvents } from './members.js'
import { SharedMetrics } from './metrics.js'
import { groupKey, memberRoute, parseMemberRoute } from './syntax.js'

type Message = Parameters<MQEmitter['emit']>[0]
type Done = (err?: Error) => void

/** How full one client's outbound queue is (transport/outbound.ts). */
export interface QueueLoad {
  readonly full: boolean
  readonly queued: number
}

/** Where a message for a member of another node says who it is for. */
interface ShareTarget {
  readonly group: string
  readonly clientId: string
  /** Nodes it has been sent on to: past `MAX_HOPS` it goes to a member of the node holding it, or nowhere. */
  readonly hops: number
}

/** A QoS 1/2 message written to a member and not acknowledged yet, and its group. */
interface Unacked {
  readonly message: Message
  readonly group: string
}

/** A member client of this node: its groups, and its QoS 1/2 shared messages not acknowledged yet, by packet id. */
interface MemberClient {
  readonly groups: Set<string>
  readonly unacked: Map<number, Unacked>
}

export interface SharedDeps {
  readonly nodeId: string
  /** aedes' persistence: a persistent session's QoS 1/2 messages are stored there before they are written, as aedes does. */
  readonly persistence: object
  readonly registry: Registry
  readonly log: Logger
  /** Samples the lines a client or a group can trigger. */
  readonly sampler: LogSampler
  readonly reportError: (err: unknown, context: Readonly<Record<string, unknown>>) => void
  /** With Redis: the other nodes' members, and the way to them. */
  readonly link: SharedLink | undefined
}

/** How many nodes a message for a member may be sent on to (its member left meanwhile) before it goes to a member here or nowhere. */
const MAX_HOPS = 2
/** How long a group admitted by a SUBSCRIBE holds its place in `limits.maxSharedGroups` before its member joins. */
const RESERVE_MS = 5_000
const NO_LOAD: QueueLoad = { full: false, queued: 0 }
const NO_GROUPS: readonly Group[] = []

/**
 * Shared subscriptions, `$share/<group>/<filter>`: each message matching a group's filter
 * goes to one member of the group, in turn, skipping members whose outbound queue is full.
 *
 * The choice is made once, where the message is emitted (the node it was published on):
 * this wraps the mq aedes is given, so each message emitted is offered to the groups
 * before it goes to the ordinary subscribers. A member on this node is written to as
 * aedes writes to a subscriber (its bounded queue, the `forward` chain, its QoS); a
 * member on another node is sent the message on that node's inbox, addressed to it.
 * QoS 1/2 messages written to a member are remembered until the member acknowledges
 * them; when its connection closes, those left are handed to another member.
 */
export class SharedSubscriptions implements MemberEvents {
  readonly groups = new Groups()
  readonly #deps: SharedDeps
  readonly #metrics: SharedMetrics
  readonly #clients = new Map<Client, MemberClient>()
  /** Groups admitted by a SUBSCRIBE whose member has not joined yet, until when. */
  readonly #reserved = new Map<string, number>()
  /** Shared deliveries are numbered on their own (`brokerId` `<nodeId>/$share`): aedes' per-client dedupe by number would take a message delivered to the same client through an ordinary subscription, or handed over, for a copy. */
  readonly #brokerId: string
  #counter = 0
  #load: (client: Client) => QueueLoad = () => NO_LOAD

  constructor (deps: SharedDeps) {
    this.#deps = deps
    this.#brokerId = `${deps.nodeId}/$share`
    this.#metrics = new SharedMetrics(deps.registry, () => this.#membersByName())
    deps.link?.attach(
      (message, done) => { this.#receive(message, done) },
      (node, route, joined) => { this.#remoteMember(node, route, joined) })
  }

  /** How full a client's outbound queue is; until told, every queue has room. */
  useLoad (load: (client: Client) => QueueLoad): void {
    this.#load = load
  }

  /**
   * Whether a client may join the group `group` of `filter`: one with a member on this
   * node (or admitted here already), or room for one more of this node's groups
   * (`limits.maxSharedGroups`; other nodes' groups do not count). A group admitted is
   * reserved until its member joins (aedes joins it after every filter of the SUBSCRIBE
   * was judged), or for `RESERVE_MS`: the filters of one SUBSCRIBE, or of several
   * clients at once, cannot each take the last place.
   */
  admits (group: string, filter: string, max: number): boolean {
    const key = groupKey(group, filter)
    if (this.#reserved.has(key) || this.#hasMemberHere(key)) return true
    const now = Date.now()
    for (const [reserved, until] of this.#reserved) if (until < now) this.#reserved.delete(reserved)
    let here = this.#reserved.size
    for (const known of this.groups.values()) if (known.members.some((m) => m.client !== undefined)) here++
    if (here >= max) return false
    this.#reserved.set(key, now + RESERVE_MS)
    return true
  }

  #hasMemberHere (key: string): boolean {
    return this.groups.get(key)?.members.some((m) => m.client !== undefined) === true
  }

  /** The mq aedes is given: each message emitted is offered to the shared groups too. */
  wrap (inner: MQEmitter): MQEmitter {
    const emit = (message: Message, done?: Done): void => {
      // no group on this node or the others (the fan-in path): straight through, nothing allocated
      if (this.groups.size === 0) {
        inner.emit(message, done)
        return
      }
      const groups = message.topic.startsWith(DISCARD_PREFIX) ? NO_GROUPS : this.groups.matching(message.topic)
      if (groups.length === 0) {
        inner.emit(message, done)
        return
      }
      let left = groups.length + 1
      let failed: Error | undefined
      // as for a node's inbox: a QoS 1/2 message that did not reach its member's node fails its publish (not acked, sent again)
      const partDone = (err?: Error): void => {
        if (Number(message.qos) > 0) failed ??= err
        if (--left === 0) done?.(failed)
      }
      inner.emit(message, partDone)
      for (const group of groups) this.#route(group, message, 0, partDone)
    }
    const mq: MQEmitter = {
      get current () { return inner.current },
      get concurrent () { return inner.concurrent },
      on (topic, listener, done) { inner.on(topic, listener, done); return mq },
      removeListener (topic, listener, done) { inner.removeListener(topic, listener, done) },
      emit,
      close (done) { inner.close(done) }
    }
    return mq
  }

  join (client: Client, name: string, filter: string, qos: number): void {
    const group = this.groups.join(name, filter, { node: this.#deps.nodeId, clientId: client.id, client, qos })
    this.#reserved.delete(group.key)
    let member = this.#clients.get(client)
    if (member === undefined) {
      member = { groups: new Set(), unacked: new Map() }
      this.#clients.set(client, member)
      this.#followAcks(client, member)
    }
    if (member.groups.has(group.key)) return
    member.groups.add(group.key)
    this.#deps.link?.announce(memberRoute(name, client.id, filter), true)
  }

  leave (client: Client, name: string, filter: string): void {
    const key = groupKey(name, filter)
    const member = this.#clients.get(client)
    if (member === undefined || !member.groups.delete(key)) return
    this.groups.leave(key, (m) => m.client === client)
    this.#deps.link?.announce(memberRoute(name, client.id, filter), false)
    this.#forgetUnused(name)
  }

  /** The client's connection closed: it leaves its groups, and what it did not acknowledge goes to the others. */
  gone (client: Client): void {
    const member = this.#clients.get(client)
    if (member === undefined) return
    this.#clients.delete(client)
    const names = new Set<string>()
    for (const key of member.groups) {
      const [removed] = this.groups.leave(key, (m) => m.client === client)
      if (removed === undefined) continue
      const group = keyParts(key)
      names.add(group.name)
      this.#deps.link?.announce(memberRoute(group.name, client.id, group.filter), false)
    }
    if (member.unacked.size > 0) this.#handOver(client, member.unacked)
    for (const name of names) this.#forgetUnused(name)
  }

  /** Send each unacknowledged message of a member that left to another member of its group; a persistent session lets go of them. */
  #handOver (client: Client, unacked: ReadonlyMap<number, Unacked>): void {
    const { log, sampler, reportError } = this.#deps
    let handed = 0
    for (const [messageId, { message, group: key }] of unacked) {
      // its session would send it again on reconnect: the member it goes to now has it
      if (!client.clean) this.#clearStored(client, messageId)
      const group = this.groups.get(key)
      const name = keyParts(key).name
      if (group === undefined) {
        this.#metrics.unrouted(name)
        // the group's last member here left before this one: its series go again, the label stays bounded
        this.#forgetUnused(name)
        continue
      }
      handed++
      this.#metrics.handedOver(name)
      this.#route(group, message, 0, (err) => { if (err !== undefined) reportError(err, { op: 'hand over a shared message', group: name, topic: message.topic }) })
    }
    const suppressed = sampler.take(`client ${client.id}`)
    if (suppressed !== undefined) log.info({ clientId: client.id, unacked: unacked.size, handed, ...(suppressed === 0 ? {} : { suppressed }) }, 'shared subscription member left: its unacknowledged messages go to the other members')
  }

  /** Give `message` to one member of `group`: here, or on its node. */
  #route (group: Group, message: Message, hops: number, done: Done): void {
    const member = this.#pick(group, hops >= MAX_HOPS)
    if (member === undefined) {
      this.#unrouted(group, message)
      done()
      return
    }
    if (member.client !== undefined) {
      this.#deliver(member.client, member.qos, group, message, done)
      return
    }
    const link = this.#deps.link
    if (link === undefined) {
      done()
      return
    }
    const shareTarget: ShareTarget = { group: group.key, clientId: member.clientId, hops: hops + 1 }
    link.send(member.node, { ...message, shareTarget }, done)
  }

  /**
   * The next member in turn that can take a message: a connected one here whose queue has
   * room, or one on another node (its node skips it if full). When every member here is
   * full (and no other node's may be chosen), the least loaded one: the message then meets
   * that member's bound as any message does (QoS 0 dropped and counted, QoS 1/2 kept in a
   * persistent session, a clean session disconnected and its messages handed over).
   */
  #pick (group: Group, hereOnly: boolean): Member | undefined {
    const free = group.pick((m) => m.client === undefined ? !hereOnly : !m.client.closed && !this.#load(m.client).full)
    if (free !== undefined) return free
    let least: Member | undefined
    let leastQueued = Number.POSITIVE_INFINITY
    for (const m of group.members) {
      if (m.client === undefined || m.client.closed) continue
      const { queued } = this.#load(m.client)
      if (queued < leastQueued) {
        least = m
        leastQueued = queued
      }
    }
    return least
  }

  /** A message another node chose a member of this node for. */
  #receive (message: Message, done: () => void): void {
    const target: unknown = Reflect.get(message, 'shareTarget')
    Reflect.deleteProperty(message, 'shareTarget')
    const group = isShareTarget(target) ? this.groups.get(target.group) : undefined
    if (!isShareTarget(target) || group === undefined) {
      if (isShareTarget(target)) this.#metrics.unrouted(keyParts(target.group).name)
      done()
      return
    }
    const member = group.members.find((m) => m.client !== undefined && m.clientId === target.clientId && !m.client.closed && !this.#load(m.client).full)
    if (member?.client !== undefined) this.#deliver(member.client, member.qos, group, message, () => { done() })
    // it left, or its queue is full: the next member in turn
    else this.#route(group, message, target.hops, () => { done() })
  }

  /** Write `message` to a member here as aedes writes to a subscriber, at the lower of its QoS and the subscription's. */
  #deliver (client: Client, subscribedQoS: number, group: Group, message: Message, done: Done): void {
    const qos = Math.min(Number(message.qos), subscribedQoS)
    const packet: Record<string, unknown> = {
      cmd: 'publish',
      topic: message.topic,
      payload: message.payload,
      qos,
      retain: false,
      dup: false,
      brokerId: this.#brokerId,
      brokerCounter: ++this.#counter
    }
    const publisher: unknown = Reflect.get(message, 'clientId')
    if (typeof publisher === 'string') packet.clientId = publisher
    this.#metrics.delivered(group.name)
    const deliver = deliveryOf(client, qos === 0 ? 'deliver0' : 'deliverQoS')
    if (qos === 0) {
      deliver(packet, done)
      return
    }
    const messageId = takeMessageId(client)
    packet.messageId = messageId
    this.#clients.get(client)?.unacked.set(messageId, { message, group: group.key })
    if (client.clean) {
      deliver(packet, done)
      return
    }
    // aedes writes a persistent session's QoS 1/2 message only once it is in the session
    const enqueue: unknown = Reflect.get(this.#deps.persistence, 'outgoingEnqueue')
    new Promise((resolve) => {
      if (typeof enqueue !== 'function') throw new TypeError('the persistence has no outgoingEnqueue')
      resolve(Reflect.apply(enqueue, this.#deps.persistence, [{ clientId: client.id }, packet]))
    }).then(() => { deliver(packet, done) }, (err: unknown) => {
      this.#deps.reportError(err, { op: 'store a shared message in its member\'s session', clientId: client.id, topic: message.topic })
      // not written: when the member leaves it goes to another
      done()
    })
  }

  /** Acknowledged shared messages (PUBACK, PUBREC: the client has it) are forgotten. */
  #followAcks (client: Client, member: MemberClient): void {
    const parser: unknown = Reflect.get(client, '_parser')
    if (typeof parser !== 'object' || parser === null || typeof Reflect.get(parser, 'on') !== 'function') {
      throw new TypeError('aedes Client has no _parser: its internals changed, review shared/dispatch.ts')
    }
    Reflect.apply(Reflect.get(parser, 'on'), parser, ['packet', function sharedAck (packet: { cmd: string, messageId?: number }) {
      if ((packet.cmd === 'puback' || packet.cmd === 'pubrec' || packet.cmd === 'pubcomp') && packet.messageId !== undefined) member.unacked.delete(packet.messageId)
    }])
  }

  #clearStored (client: Client, messageId: number): void {
    const clear: unknown = Reflect.get(this.#deps.persistence, 'outgoingClearMessageId')
    if (typeof clear !== 'function') return
    Promise.resolve(Reflect.apply(clear, this.#deps.persistence, [client, { messageId }])).catch((err: unknown) => {
      this.#deps.reportError(err, { op: 'take a handed-over message out of its former member\'s session', clientId: client.id })
    })
  }

  #remoteMember (node: string, route: string, joined: boolean): void {
    const parsed = parseMemberRoute(route)
    if (parsed === undefined) return
    const { group, clientId, filter } = parsed
    if (joined) this.groups.join(group, filter, { node, clientId, client: undefined, qos: 2 })
    else this.groups.leave(groupKey(group, filter), (m) => m.node === node && m.clientId === clientId && m.client === undefined)
  }

  #unrouted (group: Group, message: Message): void {
    this.#metrics.unrouted(group.name)
    const suppressed = this.#deps.sampler.take(`shared group ${group.name}`)
    if (suppressed !== undefined) this.#deps.log.warn({ group: group.name, filter: group.filter, topic: message.topic, ...(suppressed === 0 ? {} : { suppressed }) }, 'shared subscription: no member could take a message')
  }

  #membersByName (): Map<string, number> {
    const counts = new Map<string, number>()
    for (const group of this.groups.values()) {
      const here = group.members.filter((m) => m.client !== undefined).length
      if (here > 0) counts.set(group.name, (counts.get(group.name) ?? 0) + here)
    }
    return counts
  }

  /** No member of the group `name` is left here: its metric series go. */
  #forgetUnused (name: string): void {
    for (const group of this.groups.values()) if (group.name === name && group.members.some((m) => m.client !== undefined)) return
    this.#metrics.forget(name)
  }
}

/** A group key's name and filter: `$share/<name>/<filter>`. */
function keyParts (key: string): { name: string, filter: string } {
  const start = '$share/'.length
  const slash = key.indexOf('/', start)
  return { name: key.slice(start, slash), filter: key.slice(slash + 1) }
}

function isShareTarget (value: unknown): value is ShareTarget {
  return typeof value === 'object' && value !== null && typeof Reflect.get(value, 'group') === 'string' &&
    typeof Reflect.get(value, 'clientId') === 'string' && typeof Reflect.get(value, 'hops') === 'number'
}

/** The client's delivery function (outbound.ts's bounded one), read when used. */
function deliveryOf (client: Client, name: 'deliver0' | 'deliverQoS'): (packet: object, done: Done) => void {
  const deliver: unknown = Reflect.get(client, name)
  if (typeof deliver !== 'function') throw new TypeError(`aedes Client has no ${name}: its internals changed, review shared/dispatch.ts`)
  return function sharedDeliver (packet, done) { Reflect.apply(deliver, client, [packet, done]) }
}

/**
 * The packet id aedes would give the client's next QoS 1/2 message, taken the way it takes
 * one (qos-packet.js): a packet given an id keeps it, so the ack can be matched to it.
 */
function takeMessageId (client: Client): number {
  const next: unknown = Reflect.get(client, '_nextId')
  if (typeof next !== 'number') throw new TypeError('aedes Client has no _nextId: its internals changed, review shared/dispatch.ts')
  Reflect.set(client, '_nextId', next >= 65535 ? 1 : next + 1)
  return next
}
