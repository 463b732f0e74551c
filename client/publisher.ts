import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { EventRejectedError, PublishUnansweredError, type RejectionRecord } from './errors.js'
import { buildEvent, topicOf, typeProblem, type CloudEventJson, type DataOf, type EventMap, type EventOptions, type TypeOf } from './event.js'

export interface PublisherOptions {
  /** `mqtt://`, `mqtts://`, `ws://` or `wss://` (the broker's WebSocket is at `/mqtt`). */
  readonly url: string
  /** The MQTT client id: its `$rejections/<clientId>` is where the broker says why it refused an event. No `+`, `#` or `/`. */
  readonly clientId: string
  readonly username?: string
  readonly password?: string
  /** The events' `source`. */
  readonly source: string
  /** Each type's `dataschema`, as `ce-broker types --out events.ts` writes them (`dataschemas`). */
  readonly dataschemas?: Readonly<Record<string, string>>
  /** How long `publish` waits for the broker's answer, in ms (default 30 000). */
  readonly timeoutMs?: number
  /** More options for the `mqtt` client (TLS `ca`, `rejectUnauthorized`, `keepalive`, ...). */
  readonly mqtt?: IClientOptions
}

/** What the broker answered for an accepted event: taken now, or a duplicate of one it took before. */
export interface Published {
  readonly id: string
  readonly duplicate: boolean
}

export interface Publisher<M extends EventMap = EventMap> {
  /**
   * Publish an event of `type` at QoS 1 on its topic; resolves once the broker accepted
   * it (`duplicate: true` when it had accepted the same source and id before), rejects
   * with an `EventRejectedError` carrying the broker's reason and field errors, or a
   * `PublishUnansweredError` when no answer came in time.
   */
  publish: <T extends TypeOf<M>>(type: T, data: DataOf<M, T>, options?: EventOptions) => Promise<Published>
  /** Publish a CloudEvent built elsewhere (a gateway, an outbox), as it is. */
  publishEvent: (event: CloudEventJson) => Promise<Published>
  /** The events' `source`, as given: what `publish` puts in an event that names none. */
  readonly source: string
  /** Each type's `dataschema`, as given: what `publish` puts in an event of that type. */
  readonly dataschemas: Readonly<Record<string, string>>
  /** The `mqtt` client, for what this does not cover. */
  readonly client: MqttClient
  /** Wait for the answers under way (at most `timeoutMs`), then disconnect. */
  close: () => Promise<void>
}

/** One publish waiting for its PUBACK; a rejection for its id may come first. */
interface Pending {
  readonly id: string
  readonly resolve: (published: Published) => void
  readonly reject: (err: Error) => void
  /** What `$rejections` said of it before its PUBACK. */
  told: RejectionRecord | undefined
  timer: NodeJS.Timeout | undefined
  /** Handed to the connection (held until `$rejections` is subscribed on it). */
  sent: boolean
  /** The callback its PUBACK calls: how its packet is found in the client's outgoing store. */
  answered: ((err?: Error) => void) | undefined
}

const DEFAULT_TIMEOUT_MS = 30_000

/**
 * A publisher with synchronous outcomes on MQTT 3.1.1. It subscribes to its own
 * `$rejections/<clientId>`, where the broker writes the record of a refused event
 * before the PUBACK that answers it (`limits.rejectionWaitMs`): so at the PUBACK, a
 * record already heard for that event id means refused (or a duplicate), none means
 * accepted.
 */
export async function createPublisher<M extends EventMap = EventMap> (options: PublisherOptions): Promise<Publisher<M>> {
  if (/[+#/]/.test(options.clientId) || options.clientId === '') throw new TypeError(`clientId ${JSON.stringify(options.clientId)} may not be empty nor hold "+", "#" or "/": it names the publisher's $rejections topic`)
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS
  const dataschemas = options.dataschemas ?? {}
  const rejections = `$rejections/${options.clientId}`
  // several publishes of one id may be under way (an outbox row sent again): answered in order
  const pending = new Map<string, Pending[]>()

  const client = await mqtt.connectAsync(options.url, {
    ...options.mqtt,
    clientId: options.clientId,
    ...(options.username === undefined ? {} : { username: options.username }),
    ...(options.password === undefined ? {} : { password: options.password }),
    // a clean session: a rejection is only meaningful before the PUBACK it precedes
    clean: true,
    // subscribed again by this publisher on each connection, before its publishes (the client would send them first)
    resubscribe: false,
    protocolVersion: 4
  })
  client.on('error', () => { /* answered per publish: its PUBACK never comes, it times out */ })
  client.on('message', function rejected (topic, payload) {
    if (topic !== rejections) return
    const record = parseRecord(payload)
    const id = record === undefined ? undefined : originalId(record)
    if (record === undefined || id === undefined) return
    const waiting = pending.get(id)?.find((p) => p.sent && p.told === undefined)
    if (waiting !== undefined) waiting.told = record
  })

  /** Whether `$rejections` is subscribed on the current connection: publishes wait for it. */
  let ready = false
  /** Publishes waiting for the connection to be ready, in order. */
  const held: Array<() => void> = []
  async function listen (): Promise<void> {
    const granted = await client.subscribeAsync(rejections, { qos: 1 })
    if (granted[0]?.qos === 128) throw new Error(`the broker refused the subscription to ${rejections}: the publisher would not hear of refused events`)
    ready = true
    for (const send of held.splice(0)) send()
  }
  try {
    await listen()
  } catch (err: unknown) {
    await client.endAsync(true)
    throw err
  }
  client.on('connect', function connectedAgain () {
    listen().catch(() => { /* the connection went again; the next one subscribes */ })
  })
  client.on('close', function connectionLost () {
    ready = false
    // sent on that connection and not answered: the client would send them again before this publisher is subscribed
    // again, so their answer would say nothing of a refusal. A record heard for one is its answer (a refusal that
    // disconnects, `onInvalid: "disconnect"`, tells it first); the others' outcome is unknown: the caller publishes again.
    // Either way the client must not send them again: a refusal that disconnects would disconnect it again on each
    // reconnect (an event over `limits.maxPayloadBytes` too), and no publish of this publisher would get through
    const given = [...pending.values()].flat().filter((p) => p.sent)
    for (const entry of given) settle(entry.id, entry, entry.told === undefined ? new PublishUnansweredError(entry.id, 'the connection closed before the broker answered') : outcomeOf(entry.id, entry.told))
    const callbacks = new Set<unknown>(given.map((p) => p.answered))
    for (const [messageId, out] of Object.entries(client.outgoing)) {
      if (callbacks.has(out.cb)) client.removeOutgoingMessage(Number(messageId))
    }
  })

  function settle (id: string, entry: Pending, outcome: Error | Published): void {
    clearTimeout(entry.timer)
    const list = pending.get(id)
    const at = list?.indexOf(entry) ?? -1
    if (list === undefined || at < 0) return
    list.splice(at, 1)
    if (list.length === 0) pending.delete(id)
    if (outcome instanceof Error) entry.reject(outcome)
    else entry.resolve(outcome)
  }

  /** Every publish not answered yet, for `close`. */
  const unanswered = new Set<Promise<Published>>()

  async function publishEvent (event: CloudEventJson): Promise<Published> {
    const answer = answerOf(event)
    unanswered.add(answer)
    try {
      return await answer
    } finally {
      unanswered.delete(answer)
    }
  }

  async function answerOf (event: CloudEventJson): Promise<Published> {
    const { id } = event
    // refused here: the broker would disconnect, and the other publishes under way would go unanswered
    const problem = typeProblem(event.type)
    if (problem !== undefined) throw new TypeError(`event ${id}: type ${JSON.stringify(event.type)} ${problem}`)
    return await new Promise<Published>((resolve, reject) => {
      const entry: Pending = { id, resolve, reject, told: undefined, timer: undefined, sent: false, answered: undefined }
      const list = pending.get(id)
      if (list === undefined) pending.set(id, [entry])
      else list.push(entry)
      entry.timer = setTimeout(() => { settle(id, entry, new PublishUnansweredError(id, `no answer within ${timeoutMs} ms`)) }, timeoutMs)
      const send = (): void => {
        if (!pending.get(id)?.includes(entry)) return
        entry.sent = true
        entry.answered = function answered (err?: Error) {
          if (err !== undefined && err !== null) settle(id, entry, new PublishUnansweredError(id, `not sent: ${err.message}`))
          else settle(id, entry, entry.told === undefined ? { id, duplicate: false } : outcomeOf(id, entry.told))
        }
        client.publish(topicOf(event.type), JSON.stringify(event), { qos: 1 }, entry.answered)
      }
      if (ready) send()
      else held.push(send)
    })
  }

  return {
    client,
    publishEvent,
    source: options.source,
    dataschemas,
    publish: async (type, data, eventOptions) => await publishEvent(buildEvent(type, data, options.source, dataschemas, eventOptions)),
    close: async () => {
      await Promise.allSettled([...unanswered])
      // every publish is answered or given up by now: nothing left worth waiting for
      await client.endAsync(true)
    }
  }
}

/** What a record heard before the answer says: a duplicate of an accepted event, or a refusal. */
function outcomeOf (id: string, told: RejectionRecord): Published | EventRejectedError {
  return told.data.reason === 'duplicate' ? { id, duplicate: true } : new EventRejectedError(id, told)
}

function parseRecord (payload: Buffer): RejectionRecord | undefined {
  try {
    const record: unknown = JSON.parse(payload.toString('utf8'))
    if (typeof record !== 'object' || record === null) return undefined
    const data: unknown = Reflect.get(record, 'data')
    if (typeof data !== 'object' || data === null || typeof Reflect.get(data, 'reason') !== 'string') return undefined
    return record as RejectionRecord
  } catch {
    return undefined
  }
}

/** The refused event's id: the record keeps the original event as `payload` when it was JSON. */
function originalId (record: RejectionRecord): string | undefined {
  const payload = record.data.payload
  if (typeof payload !== 'object' || payload === null) return undefined
  const id: unknown = Reflect.get(payload, 'id')
  return typeof id === 'string' ? id : undefined
}
