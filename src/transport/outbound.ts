import type { Client } from 'aedes'

/** The per-client outbound bounds of `limits`. */
export interface OutboundLimits {
  /** Messages handed to a client's connection and not yet written out. */
  readonly maxQueuedMessages: number
  /** Their bytes (topic + payload). */
  readonly maxQueuedBytes: number
  /** How long a client's oldest unwritten message may hold up the emitter before the client counts as slow, in ms. */
  readonly slowConsumerMs: number
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
 * Bounded outbound queues for every client of one broker, as Mosquitto
 * (`max_queued_messages`, `max_queued_bytes`) and EMQX (`max_mqueue_len`) give them.
 *
 * Why: aedes delivers a message to every matching subscriber inside one mqemitter
 * emit, and the emit is done only when each subscriber's write has completed. A write
 * to a socket whose buffer is full completes only on 'drain', so a client that stops
 * reading holds one of mqemitter's shared concurrency slots per message sent to it.
 * Once it holds them all (100), every message of the broker waits behind that one
 * socket until `limits.drainTimeoutMs` (60 s) cuts it off.
 *
 * A client that keeps up still holds the emitter until its write completes: that is
 * what throttles publishers to what subscribers can take, as in aedes, instead of
 * reading their messages only to drop them (a broker that reads more than it can
 * write spends itself on messages nobody gets). A client whose oldest unwritten
 * message has waited `slowConsumerMs` is slow: the emitter callbacks it holds are
 * released at once, and from then on its messages never hold the emitter; they wait
 * in its queue, written as it reads. Beyond `maxQueuedMessages` or `maxQueuedBytes`,
 * a message is not queued: QoS 0 is dropped, QoS 1/2 of a persistent session stays
 * in the session store (aedes stored it for the session before delivering it), a
 * clean-session client is disconnected. Once its queue is empty the client holds
 * the emitter again. So a reader that stops costs the others at most
 * `slowConsumerMs` once, then nothing.
 */
export class OutboundQueues {
  readonly #limits: OutboundLimits
  readonly #onOverflow: (overflow: Overflow) => void
  readonly #queues = new Set<ClientQueue>()
  readonly #timer: NodeJS.Timeout
  /** A coarse clock (ms), advanced by the timer: no clock read per message. */
  now = Date.now()

  /** @param onOverflow told of each message that found its client's queue full (it counts; its logging is sampled) */
  constructor (limits: OutboundLimits, onOverflow: (overflow: Overflow) => void) {
    this.#limits = limits
    this.#onOverflow = onOverflow
    // a client counts as slow between slowConsumerMs and 1.5 times it after its oldest write started
    this.#timer = setInterval(() => { this.#tick() }, Math.max(10, Math.floor(limits.slowConsumerMs / 2))).unref()
  }

  /**
   * Give `client` its bounded queue. It wraps the client's `deliver0` and `deliverQoS`,
   * which aedes reads when a subscription is made: call it right after `aedes.handle()`,
   * before any SUBSCRIBE. If aedes' internals change and they are missing, this throws
   * rather than letting the broker run unbounded.
   */
  attach (client: Client): void {
    const queue = new ClientQueue(client, this, this.#limits, this.#onOverflow)
    this.#queues.add(queue)
    client.conn.once('close', () => { this.#queues.delete(queue) })
  }

  /** Stop the clock (the broker is closing). */
  close (): void {
    clearInterval(this.#timer)
  }

  #tick (): void {
    this.now = Date.now()
    const before = this.now - this.#limits.slowConsumerMs
    for (const queue of this.#queues) queue.checkSlow(before)
  }
}

/** One client's queue: what it has not written yet, and whether it still holds the emitter. */
class ClientQueue {
  readonly #client: Client
  readonly #clock: { readonly now: number }
  readonly #limits: OutboundLimits
  readonly #onOverflow: (overflow: Overflow) => void
  readonly #deliver0: Deliver
  readonly #deliverQoS: Deliver
  /**
   * Deliveries holding the emitter until written, by sequence number − `#base`: each
   * one's emitter callback (cleared once called) and when it started. Arrays rather
   * than a Set of objects: this runs for every message to every subscriber.
   */
  #dones: Array<(() => void) | undefined> = []
  #startedAt: number[] = []
  #base = 0
  #waiting = 0
  #queued = 0
  #queuedBytes = 0
  #slow = false
  #disconnecting = false

  constructor (client: Client, clock: { readonly now: number }, limits: OutboundLimits, onOverflow: (overflow: Overflow) => void) {
    this.#client = client
    this.#clock = clock
    this.#limits = limits
    this.#onOverflow = onOverflow
    this.#deliver0 = deliveryOf(client, 'deliver0')
    this.#deliverQoS = deliveryOf(client, 'deliverQoS')
    const bounded0: Deliver = (packet, done) => { this.#deliver(this.#deliver0, packet, done) }
    const boundedQoS: Deliver = (packet, done) => {
      // aedes' deliverQoS hands QoS 0 to deliver0, which is bounded0 now: go there directly, counted once
      if (packet.qos === 0) bounded0(packet, done)
      else this.#deliver(this.#deliverQoS, packet, done)
    }
    Reflect.set(client, 'deliver0', bounded0)
    Reflect.set(client, 'deliverQoS', boundedQoS)
  }

  /** Called by the clock: a client whose oldest waiting write started before `before` is slow. */
  checkSlow (before: number): void {
    // drop the written ones at the front: what is left starts with the oldest still waiting
    let first = 0
    while (first < this.#dones.length && this.#dones[first] === undefined) first++
    if (first > 0) {
      this.#dones.splice(0, first)
      this.#startedAt.splice(0, first)
      this.#base += first
    }
    const oldest = this.#startedAt[0]
    if (oldest === undefined || oldest > before) return
    // from now on nobody waits for this client; what waited goes on at once
    this.#slow = true
    const released = this.#dones
    this.#base += released.length
    this.#dones = []
    this.#startedAt = []
    this.#waiting = 0
    for (const done of released) done?.()
  }

  #deliver (deliver: Deliver, packet: Outgoing, done: () => void): void {
    const size = packet.topic.length + packet.payload.length
    const limit = this.#over(size)
    if (limit !== undefined) {
      this.#refuse(packet.qos, limit)
      done()
      return
    }
    this.#queued++
    this.#queuedBytes += size
    if (this.#slow) {
      deliver(packet, () => { this.#written(size) })
      done()
      return
    }
    const seq = this.#base + this.#dones.length
    this.#dones.push(done)
    this.#startedAt.push(this.#clock.now)
    this.#waiting++
    deliver(packet, () => {
      this.#written(size)
      this.#release(seq)
    })
  }

  /** Call the emitter callback of delivery `seq`, unless the client turned slow meanwhile, which called it. */
  #release (seq: number): void {
    const index = seq - this.#base
    const done = this.#dones[index]
    if (done === undefined) return
    this.#dones[index] = undefined
    if (--this.#waiting === 0) {
      // nothing waits: start the arrays afresh rather than keep written entries
      this.#base += this.#dones.length
      this.#dones = []
      this.#startedAt = []
    }
    done()
  }

  #written (size: number): void {
    this.#queued--
    this.#queuedBytes -= size
    // caught up: it may hold the emitter again
    if (this.#queued === 0) this.#slow = false
  }

  /** The bound `size` more bytes would break, if any. */
  #over (size: number): Overflow['limit'] | undefined {
    if (this.#queued >= this.#limits.maxQueuedMessages) return 'queued_messages'
    // one message larger than the byte bound still goes when nothing else waits
    if (this.#queued > 0 && this.#queuedBytes + size > this.#limits.maxQueuedBytes) return 'queued_bytes'
    return undefined
  }

  #refuse (qos: number, limit: Overflow['limit']): void {
    const client = this.#client
    const overflow = { client, limit, queued: this.#queued, queuedBytes: this.#queuedBytes }
    if (qos === 0) {
      this.#onOverflow({ ...overflow, action: 'dropped' })
    } else if (!client.clean) {
      this.#onOverflow({ ...overflow, action: 'held' })
    } else if (!this.#disconnecting) {
      this.#disconnecting = true
      this.#onOverflow({ ...overflow, action: 'disconnected' })
      // aedes closes the client when its connection ends; the pending writes fail and are uncounted
      client.conn.destroy()
    }
  }
}

/** aedes' own delivery function `name` of `client`, bound to it. */
function deliveryOf (client: Client, name: 'deliver0' | 'deliverQoS'): Deliver {
  const deliver: unknown = Reflect.get(client, name)
  if (typeof deliver !== 'function') throw new TypeError(`aedes Client has no ${name}: its internals changed, review outbound.ts`)
  return function aedesDeliver (packet, done) { Reflect.apply(deliver, client, [packet, done]) }
}
