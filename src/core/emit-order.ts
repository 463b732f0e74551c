import type { Aedes } from 'aedes'
import type { MQEmitter } from 'mqemitter'
import { DISCARD_PREFIX } from './reserved-topics.js'

/** One publish of this node that aedes numbered and that has not reached the mq yet. */
interface Numbered {
  readonly counter: number
  readonly brokerId: string
  /** Set once aedes emits it: the real emit, run when every earlier one has run. */
  emit: (() => void) | undefined
  /** The publish ended without an emit (an error before it): nothing to wait for. */
  dropped: boolean
}

/**
 * Keep this node's packets reaching the mq in the order aedes numbered them.
 *
 * aedes gives every packet it publishes the next `brokerCounter` when `publish()`
 * starts, and each client drops a packet numbered below the highest it already
 * got from the same node: its `dedupe`, meant for a packet matching two of the
 * client's subscriptions. That holds only while a node's packets are emitted in
 * number order, and they are not: a QoS 1/2 publish goes through persistence
 * (`enqueueOffline`, a Redis round trip in a cluster) before it is emitted, a QoS 0
 * one does not. A QoS 0 packet numbered later overtakes it, and a client subscribed
 * to both silently loses the QoS 1 one (aedes issues #994 and #955): a client
 * subscribed to `$rejections/<its id>` and `$audit/#` never got its rejection, whose
 * QoS 1 record is published just before the QoS 0 audit record.
 *
 * So each publish's number is noted when it starts, and an emit waits until every
 * publish numbered before it has been emitted or has failed. Packets that already
 * carry a number (another node's, a stored one) pass straight through.
 */
export function keepEmitOrder (aedes: Aedes, mq: MQEmitter): void {
  const publish: unknown = Reflect.get(aedes, 'publish')
  const emit: unknown = Reflect.get(mq, 'emit')
  if (typeof publish !== 'function' || typeof emit !== 'function' || typeof Reflect.get(aedes, 'counter') !== 'number') {
    throw new TypeError('aedes has no publish() or counter, or the mq no emit(): their internals changed, review emit-order.ts')
  }
  /** Publishes numbered and not yet emitted, in number order. */
  const queue: Numbered[] = []
  const byCounter = new Map<number, Numbered>()
  let draining = false

  /** Run the emits at the head of the queue whose turn has come; emits they cause queue behind. */
  function drain (): void {
    if (draining) return
    draining = true
    try {
      for (let head = queue[0]; head !== undefined && (head.emit !== undefined || head.dropped); head = queue[0]) {
        queue.shift()
        // a number noted for a publish that never took it may have been noted again for the next one
        if (byCounter.get(head.counter) === head) byCounter.delete(head.counter)
        head.emit?.()
      }
    } finally {
      draining = false
    }
  }

  Reflect.set(aedes, 'publish', function orderedPublish (packet: unknown, clientOrDone: unknown, maybeDone?: unknown): void {
    // the fan-in path: a QoS 0 message that is not retained reaches the mq within this call
    // (no persistence step before its emit), so while nothing waits it cannot be overtaken
    // or overtake: nothing to note
    // and a discarded packet (refused, or routed already by the commit) reaches no one: its order does not matter
    if (isObject(packet) && ((queue.length === 0 && Reflect.get(packet, 'retain') !== true && !(Number(Reflect.get(packet, 'qos')) > 0)) || isDiscarded(packet))) {
      // call(), not Reflect.apply(): no arguments array per message on the hottest path
      publish.call(aedes, packet, clientOrDone, maybeDone)
      return
    }
    const done = typeof clientOrDone === 'function' ? clientOrDone : maybeDone
    const client = typeof clientOrDone === 'function' ? null : clientOrDone
    const numbered = numberTaken(packet, aedes)
    if (numbered !== undefined) {
      queue.push(numbered)
      byCounter.set(numbered.counter, numbered)
    }
    const endWithoutEmit = (): void => {
      if (numbered !== undefined && numbered.emit === undefined && !numbered.dropped) {
        numbered.dropped = true
        drain()
      }
    }
    try {
      Reflect.apply(publish, aedes, [packet, client, function published (err?: Error | null): void {
        // failed before its emit (a persistence error): nothing to wait for
        endWithoutEmit()
        if (typeof done === 'function') Reflect.apply(done, undefined, [err])
      }])
    } catch (err: unknown) {
      // thrown before its emit: later publishes must not wait for it
      endWithoutEmit()
      throw err
    }
  })

  Reflect.set(mq, 'emit', function orderedEmit (message: unknown, callback?: unknown): MQEmitter {
    if (byCounter.size === 0) {
      emit.call(mq, message, callback)
      return mq
    }
    const counter: unknown = isObject(message) ? Reflect.get(message, 'brokerCounter') : undefined
    const numbered = typeof counter === 'number' ? byCounter.get(counter) : undefined
    if (numbered === undefined || !isObject(message) || Reflect.get(message, 'brokerId') !== numbered.brokerId) {
      Reflect.apply(emit, mq, [message, callback])
      return mq
    }
    numbered.emit = () => { Reflect.apply(emit, mq, [message, callback]) }
    drain()
    return mq
  })
}

/**
 * The number `packet` takes as aedes publishes it, to note; `undefined` when it takes
 * none: aedes' Packet keeps a number the packet already has, else takes the next one,
 * and a topic over aedes' level limit is refused before it takes one (aedes.js publish).
 */
function numberTaken (packet: unknown, aedes: Aedes): Numbered | undefined {
  if (!isObject(packet) || Boolean(Reflect.get(packet, 'brokerCounter')) || levelsOf(Reflect.get(packet, 'topic')) > Number(Reflect.get(aedes, 'maxTopicLevels'))) return undefined
  return { counter: Number(Reflect.get(aedes, 'counter')) + 1, brokerId: brokerIdOf(packet, aedes), emit: undefined, dropped: false }
}

/** Levels of `topic`, as aedes counts them for its `maxTopicLevels` check. */
function levelsOf (topic: unknown): number {
  if (typeof topic !== 'string') return 0
  let levels = 1
  for (let i = topic.indexOf('/'); i !== -1; i = topic.indexOf('/', i + 1)) levels++
  return levels
}

function isObject (value: unknown): value is object {
  return typeof value === 'object' && value !== null
}

function brokerIdOf (packet: object, aedes: Aedes): string {
  const own: unknown = Reflect.get(packet, 'brokerId')
  return typeof own === 'string' && own !== '' ? own : aedes.id
}

function isDiscarded (packet: object): boolean {
  const topic: unknown = Reflect.get(packet, 'topic')
  return typeof topic === 'string' && topic.startsWith(DISCARD_PREFIX)
}
