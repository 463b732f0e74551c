import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { Answers, type Published } from './answers.js'

export type { Published } from './answers.js'
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
  const answers = new Answers()

  const { client, whenReady } = await connect(options, answers)

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
    const entry = answers.open(id, timeoutMs)
    const send = (): void => {
      if (!answers.waiting(entry)) return
      client.publish(topicOf(event.type), JSON.stringify(event), { qos: 1 }, answers.sent(entry))
    }
    whenReady(send)
    return await entry.answer
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

/** The publisher's connection: `whenReady` runs a send once `$rejections` is subscribed on the current connection. */
interface Link {
  readonly client: MqttClient
  readonly whenReady: (send: () => void) => void
}

/**
 * Connect, and subscribe to `$rejections/<clientId>` on every connection before anything
 * is sent on it: the `mqtt` client would send its kept and queued publishes first, and
 * their refusals would go to nobody.
 */
async function connect (options: PublisherOptions, answers: Answers): Promise<Link> {
  const rejections = `$rejections/${options.clientId}`
  const client = await mqtt.connectAsync(options.url, {
    ...options.mqtt,
    clientId: options.clientId,
    ...(options.username === undefined ? {} : { username: options.username }),
    ...(options.password === undefined ? {} : { password: options.password }),
    // a clean session: a rejection is only meaningful before the PUBACK it precedes
    clean: true,
    resubscribe: false,
    protocolVersion: 4
  })
  client.on('error', () => { /* answered per publish: its PUBACK never comes, it times out */ })
  client.on('message', function rejected (topic, payload) {
    if (topic === rejections) answers.told(payload)
  })
  let ready = false
  /** Sends waiting for the connection to be ready, in order. */
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
    // what was sent on that connection is answered now (`Answers.giveUp`), and the client must not send it again: a
    // refusal that disconnects (`onInvalid: "disconnect"`, an event over `limits.maxPayloadBytes`) would disconnect it
    // again on each reconnect, and no publish of this publisher would get through
    const callbacks = answers.giveUp()
    for (const [messageId, out] of Object.entries(client.outgoing)) {
      if (callbacks.has(out.cb)) client.removeOutgoingMessage(Number(messageId))
    }
  })
  return {
    client,
    whenReady: (send) => {
      if (ready) send()
      else held.push(send)
    }
  }
}
