import type { Client } from 'aedes'

/** The per-client outbound bounds of `limits`. */
export interface OutboundLimits {
  /** Messages handed to the client's connection and not yet written out. */
  readonly maxQueuedMessages: number
  /** Their bytes (topic + payload). */
  readonly maxQueuedBytes: number
}

/** What happened to a message that found its client's queue full. */
export type OverflowAction =
  /** QoS 0: not sent to this client. */
  | 'dropped'
  /** QoS 1/2 of a persistent session: not written now; it stays in the session store and is sent when the client next connects. */
  | 'held'
  /** QoS 1/2 of a clean session: the client is disconnected (its session, and the message with it, ends). */
  | 'disconnected'

/** One message that found its client's queue full. */
export interface Overflow {
  readonly client: Client
  readonly action: OverflowAction
  /** The bound it hit. */
  readonly limit: 'queued_messages' | 'queued_bytes'
  /** Messages and bytes waiting for the client when it happened. */
  readonly queued: number
  readonly queuedBytes: number
}

/** A message as aedes hands it to a subscriber's delivery function. */
interface Outgoing {
  readonly topic: string
  readonly payload: Buffer | string
  readonly qos: number
}

type Deliver = (packet: Outgoing, done: () => void) => void

/**
 * Give `client` a bounded outbound queue, as Mosquitto (`max_queued_messages`,
 * `max_queued_bytes`) and EMQX (`max_mqueue_len`) do.
 *
 * Why: aedes delivers a message to every matching subscriber inside one mqemitter
 * emit, and calls the emit done only when each subscriber's write has completed. A
 * write to a socket whose buffer is full completes only on 'drain', so a client that
 * stops reading holds one of mqemitter's shared concurrency slots per message sent to
 * it. Once they are all taken (100), every other message of the broker waits behind
 * that one socket until `limits.drainTimeoutMs` cuts it off: one reader stalls all.
 *
 * Here each delivery to `client` lets mqemitter go on at once, and the write goes on
 * by itself; what it has not yet written is counted. Beyond `maxQueuedMessages` or
 * `maxQueuedBytes` a message is not handed to the connection: QoS 0 is dropped, QoS 1/2
 * of a persistent session stays in the session store (aedes stored it for the session
 * before delivering it), a clean-session client is disconnected. `onOverflow` is told
 * each time (it counts; its logging is sampled).
 *
 * It wraps the client's `deliver0` and `deliverQoS`, which aedes reads when a
 * subscription is made; call it right after `aedes.handle()`, before any SUBSCRIBE. If
 * aedes' internals change and they are missing, this throws rather than letting the
 * broker run unbounded.
 */
export function boundOutbound (client: Client, limits: OutboundLimits, onOverflow: (overflow: Overflow) => void): void {
  const deliver0 = deliveryOf(client, 'deliver0')
  const deliverQoS = deliveryOf(client, 'deliverQoS')
  let queued = 0
  let queuedBytes = 0
  let disconnecting = false

  /** The bound `size` more bytes would break, if any. */
  function over (size: number): Overflow['limit'] | undefined {
    if (queued >= limits.maxQueuedMessages) return 'queued_messages'
    // one message larger than the byte bound still goes when nothing else waits
    if (queued > 0 && queuedBytes + size > limits.maxQueuedBytes) return 'queued_bytes'
    return undefined
  }

  /** Hand `packet` to aedes' own delivery and let the emitter go on now; count it until written. */
  function send (deliver: Deliver, packet: Outgoing, done: () => void, size: number): void {
    queued++
    queuedBytes += size
    let written = false
    deliver(packet, function writtenOut () {
      if (written) return
      written = true
      queued--
      queuedBytes -= size
    })
    done()
  }

  function refuse (action: OverflowAction, limit: Overflow['limit']): void {
    onOverflow({ client, action, limit, queued, queuedBytes })
  }

  const bounded0: Deliver = function boundedDeliver0 (packet, done) {
    const size = sizeOf(packet)
    const limit = over(size)
    if (limit === undefined) {
      send(deliver0, packet, done, size)
      return
    }
    refuse('dropped', limit)
    done()
  }

  const boundedQoS: Deliver = function boundedDeliverQoS (packet, done) {
    // aedes' deliverQoS hands QoS 0 to deliver0, which is bounded0 now: go there directly, counted once
    if (packet.qos === 0) {
      bounded0(packet, done)
      return
    }
    const size = sizeOf(packet)
    const limit = over(size)
    if (limit === undefined) {
      send(deliverQoS, packet, done, size)
      return
    }
    if (!client.clean) {
      refuse('held', limit)
      done()
      return
    }
    if (!disconnecting) {
      disconnecting = true
      refuse('disconnected', limit)
      // aedes closes the client when its connection ends; the pending writes fail and are uncounted
      client.conn.destroy()
    }
    done()
  }

  Reflect.set(client, 'deliver0', bounded0)
  Reflect.set(client, 'deliverQoS', boundedQoS)
}

/** aedes' own delivery function `name` of `client`, bound to it. */
function deliveryOf (client: Client, name: 'deliver0' | 'deliverQoS'): Deliver {
  const deliver: unknown = Reflect.get(client, name)
  if (typeof deliver !== 'function') throw new TypeError(`aedes Client has no ${name}: its internals changed, review outbound.ts`)
  return function aedesDeliver (packet, done) { Reflect.apply(deliver, client, [packet, done]) }
}

function sizeOf (packet: Outgoing): number {
  return packet.topic.length + (typeof packet.payload === 'string' ? packet.payload.length : packet.payload.length)
}
