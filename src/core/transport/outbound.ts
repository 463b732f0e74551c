import type { Client } from 'aedes'
import type { ForwardCheck } from '../hooks/forward.js'

/** The per-client outbound bounds of `limits`. */
export interface OutboundLimits {
  /** Messages handed to a client's connection and not yet written out. */
  readonly maxQueuedMessages: number
  /** Their bytes (topic + payload). */
  readonly maxQueuedBytes: number
  /** How long a client's oldest unwritten message may hold up the emitter before the client counts as slow, in ms. */
  readonly slowConsumerMs: number
}

/** What happened to a client (`slow`) or to a message that found its client's queue full. */
export type OverflowAction =
  /** The client's oldest write waited `slowConsumerMs`: from now on nobody waits for it (no message is lost). */
  | 'slow'
  /** QoS 0: not sent to this client. */
  | 'dropped'
  /** QoS 1/2 of a persistent session: not written now; it stays in the session store and is sent when the client next connects. */
  | 'held'
  /** QoS 1/2 of a clean session: the client is disconnected (its session, and the message with it, ends). */
  | 'disconnected'

/** A client found slow, or one message that found its client's queue full. */
export interface Overflow {
  readonly client: Client
  readonly action: OverflowAction
  /** The bound it hit, as `ce_broker_limit_hits_total{limit}` names it. */
  readonly limit: 'slow_consumer' | 'queued_messages' | 'queued_bytes'
  /** Messages and bytes waiting for the client when it happened. */
  readonly queued: number
  readonly queuedBytes: number
}

/** A message as aedes hands it to a subscriber's delivery function. */
interface Outgoing {
  readonly topic: string
  readonly payload: Buffer | string
  readonly qos: number
  /** True only for retained messages sent on SUBSCRIBE: aedes clears it on live ones [MQTT-3.3.1-9]. */
  readonly retain: boolean
}

/**
 * The `forward` hooks (ACL denies), for the deliveries aedes would get wrong: when
 * authorizeForward refuses a QoS 1/2 message to a persistent session, aedes clears
 * the session's stored copy by a message id the message does not have yet, and so
 * removes another message (the client then fails on "no such packet"). Those are
 * asked here instead, and a refused one is taken out of the session by its own id.
 */
export interface ForwardGate {
  readonly check: ForwardCheck
  /** aedes' persistence: `outgoingUpdate` and `outgoingClearMessageId` take a refused message out of the session. */
  readonly persistence: object
  readonly reportError: (err: unknown, context: Readonly<Record<string, unknown>>) => void
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
 * the emitter again, after a back-off that doubles each time it is found slow again
 * (`slowEpisode`). So a reader that stops costs the others at most `slowConsumerMs`
 * once, and one that stops and starts in cycles a few times a minute at most.
 *
 * Retained messages sent on SUBSCRIBE are not the emitter's: they come from the
 * client's own stream, which waits for each write, so they bypass the bound and are
 * never dropped.
 */
export class OutboundQueues {
  readonly #limits: OutboundLimits
  readonly #onOverflow: (overflow: Overflow) => void
  readonly #forward: ForwardGate | undefined
  readonly #queues = new Set<ClientQueue>()
  readonly #byClient = new WeakMap<Client, ClientQueue>()
  readonly #timer: NodeJS.Timeout
  /** A coarse clock (ms), advanced by the timer: no clock read per message. */
  now = Date.now()

  /**
   * @param onOverflow told of each message that found its client's queue full (it counts; its logging is sampled)
   * @param forward the `forward` hooks, asked here for QoS 1/2 messages to persistent sessions
   */
  constructor (limits: OutboundLimits, onOverflow: (overflow: Overflow) => void, forward?: ForwardGate) {
    this.#limits = limits
    this.#onOverflow = onOverflow
    this.#forward = forward
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
    const queue = new ClientQueue(client, this, this.#limits, this.#onOverflow, this.#forward)
    this.#queues.add(queue)
    this.#byClient.set(client, queue)
    client.conn.once('close', () => { this.#queues.delete(queue) })
  }

  /** How full `client`'s queue is: whether one more message would be over a bound, and how many wait. */
  load (client: Client): { readonly full: boolean, readonly queued: number } {
    const queue = this.#byClient.get(client)
    return queue === undefined ? { full: false, queued: 0 } : queue.load()
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
  readonly #forward: ForwardGate | undefined
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
  /** Until when a slow client stays slow even once caught up: a reader that stops again and again is not waited for again and again. */
  #slowUntil = 0
  #episodes = 0
  #lastSlowAt = Number.NEGATIVE_INFINITY
  #disconnecting = false
  /** Ids given to refused QoS 1/2 messages to take them out of the session: beyond MQTT's 1–65535, never on the wire. */
  #forgetId = 65_536

  constructor (client: Client, clock: { readonly now: number }, limits: OutboundLimits, onOverflow: (overflow: Overflow) => void, forward: ForwardGate | undefined) {
    this.#client = client
    this.#clock = clock
    this.#limits = limits
    this.#onOverflow = onOverflow
    this.#forward = forward
    this.#deliver0 = deliveryOf(client, 'deliver0')
    this.#deliverQoS = deliveryOf(client, 'deliverQoS')
    const bounded0: Deliver = (packet, done) => {
      // retained messages on SUBSCRIBE come from the client's own stream, which waits for each: not the emitter's
      if (packet.retain) this.#deliver0(packet, done)
      // a QoS 0 subscription gets every message at QoS 0, whatever it was published with
      else this.#deliver(this.#deliver0, packet, done, 0)
    }
    const boundedQoS: Deliver = (packet, done) => {
      // aedes' deliverQoS hands QoS 0 to deliver0, which is bounded0 now: go there directly, counted once
      if (packet.qos === 0) {
        bounded0(packet, done)
        return
      }
      const check = this.#forward?.check
      if (!client.clean && check?.active() === true) {
        if (!check.allowed(client, packet)) {
          // a retained one was never stored; a live one was, for this session: take it out
          if (!packet.retain) this.#forget(packet)
          done()
          return
        }
        check.passed.add(packet)
      }
      if (packet.retain) this.#deliverQoS(packet, done)
      else this.#deliver(this.#deliverQoS, packet, done, packet.qos)
    }
    Reflect.set(client, 'deliver0', bounded0)
    Reflect.set(client, 'deliverQoS', boundedQoS)
  }

  load (): { readonly full: boolean, readonly queued: number } {
    return { full: this.#over(0) !== undefined, queued: this.#queued }
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
    const now = this.#clock.now
    const episode = slowEpisode(this.#episodes, this.#lastSlowAt, now, this.#limits.slowConsumerMs)
    this.#episodes = episode.episodes
    this.#slowUntil = episode.until
    this.#lastSlowAt = now
    this.#slow = true
    this.#onOverflow({ client: this.#client, action: 'slow', limit: 'slow_consumer', queued: this.#queued, queuedBytes: this.#queuedBytes })
    const released = this.#dones
    this.#base += released.length
    this.#dones = []
    this.#startedAt = []
    this.#waiting = 0
    for (const done of released) done?.()
  }

  #deliver (deliver: Deliver, packet: Outgoing, done: () => void, qos: number): void {
    const size = packet.topic.length + packet.payload.length
    const limit = this.#over(size)
    if (limit !== undefined) {
      this.#refuse(qos, limit)
      done()
      return
    }
    if (this.#slow && this.#queued === 0 && this.#clock.now >= this.#slowUntil) this.#slow = false
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
    // caught up, and not slow again and again: it may hold the emitter again
    if (this.#queued === 0 && this.#clock.now >= this.#slowUntil) this.#slow = false
  }

  /** The bound `size` more bytes would break, if any. */
  #over (size: number): 'queued_messages' | 'queued_bytes' | undefined {
    if (this.#queued >= this.#limits.maxQueuedMessages) return 'queued_messages'
    // one message larger than the byte bound still goes when nothing else waits
    if (this.#queued > 0 && this.#queuedBytes + size > this.#limits.maxQueuedBytes) return 'queued_bytes'
    return undefined
  }

  /** Take a refused QoS 1/2 message out of this persistent session: give it an id of its own, then clear that id. */
  #forget (packet: Outgoing): void {
    const forward = this.#forward
    if (forward === undefined) return
    const persistence = forward.persistence
    const update: unknown = Reflect.get(persistence, 'outgoingUpdate')
    const clear: unknown = Reflect.get(persistence, 'outgoingClearMessageId')
    if (typeof update !== 'function' || typeof clear !== 'function') {
      forward.reportError(new TypeError('the persistence has no outgoingUpdate/outgoingClearMessageId'), { clientId: this.#client.id })
      return
    }
    // the packet is this delivery's own copy (aedes makes one per subscription)
    Reflect.set(packet, 'messageId', this.#forgetId)
    this.#forgetId = this.#forgetId >= 1_000_000_000 ? 65_536 : this.#forgetId + 1
    const client = this.#client
    Promise.resolve(Reflect.apply(update, persistence, [client, packet]))
      .then(() => Reflect.apply(clear, persistence, [client, packet]))
      .catch((err: unknown) => { forward.reportError(err, { op: 'drop a refused message from the session', clientId: client.id, topic: packet.topic }) })
  }

  #refuse (qos: number, limit: 'queued_messages' | 'queued_bytes'): void {
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

/** A client that has been slow is not forgiven its past episodes until this long without one. */
const SLOW_EPISODES_FORGOTTEN_MS = 10 * 60_000
/** The longest a slow client stays slow once caught up. */
const MAX_SLOW_BACKOFF_MS = 60_000

/**
 * A client found slow at `now`, its `episodes`th time (the last at `lastSlowAt`): until
 * when it stays slow even once caught up. `slowConsumerMs`, then twice as long each time
 * it is slow again, at most a minute: a reader that stops and starts in cycles costs the
 * others a wait of `slowConsumerMs` a few times a minute at most, not once per cycle.
 * Ten minutes without an episode and it starts afresh.
 */
export function slowEpisode (episodes: number, lastSlowAt: number, now: number, slowConsumerMs: number): { episodes: number, until: number } {
  const nth = now - lastSlowAt > SLOW_EPISODES_FORGOTTEN_MS ? 1 : episodes + 1
  return { episodes: nth, until: now + Math.min(slowConsumerMs * 2 ** (nth - 1), MAX_SLOW_BACKOFF_MS) }
}

/** aedes' own delivery function `name` of `client`, bound to it. */
function deliveryOf (client: Client, name: 'deliver0' | 'deliverQoS'): Deliver {
  const deliver: unknown = Reflect.get(client, name)
  if (typeof deliver !== 'function') throw new TypeError(`aedes Client has no ${name}: its internals changed, review outbound.ts`)
  return function aedesDeliver (packet, done) { Reflect.apply(deliver, client, [packet, done]) }
}
