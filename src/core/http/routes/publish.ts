import { randomUUID } from 'node:crypto'
import type { FastifyPluginAsync, FastifyReply, preValidationAsyncHookHandler } from 'fastify'
import type { OutgoingMessage, SubmitOptions } from '../../context.js'
import { dottedToTopic, topicToType, typeToTopic } from '../../cloudevents/topic.js'
import { BadRequestError, DuplicateEventError, EventRejectedError, type BrokerError, type EventProblem, type RejectReason } from '../../errors.js'
import { EnvelopeChecker, tooDeep } from '../../cloudevents/envelope.js'
import { MAX_JSON_DEPTH, mayNestDeeperThan, nestedDeeperThan } from '../../payload.js'
import { topicFilterProblem } from '../../topics.js'
import { fromHttp, type BoundEvent } from '../cloudevents-binding.js'
import { errorBody, httpAnswerOf } from '../errors.js'

/** What the ingress routes use. */
export interface IngressSource {
  /** The whole publish pipeline, as for a client publish. */
  readonly submit: (message: OutgoingMessage, options: SubmitOptions) => Promise<BrokerError | undefined>
  /** Dead-letter a message refused before the pipeline could read it. */
  readonly keep: (message: OutgoingMessage, error: BrokerError, options: SubmitOptions) => void
  /** Count and audit a refusal for size, which is not dead-lettered (nothing was read to keep). */
  readonly tooLarge: (topic: string, payloadBytes: number) => void
  readonly maxPayloadBytes: number
  /** `limits.httpBodyBytes`: the publish routes take bodies up to the larger of the two. */
  readonly httpBodyBytes: number
  /** Whether publishes on an MQTT topic must be CloudEvents (a validation rule says so): there a payload that is only an event's data is wrapped in one. */
  readonly cloudEventTopic: (topic: string) => boolean
}

/** The `source` of an event the publish route wraps around a payload that is only its data. */
export const WRAPPED_SOURCE = '/api/mqtt/publish'

/** What one event of a request came to. */
type Outcome =
  | { readonly accepted: true, readonly topic: string, readonly id?: string }
  | { readonly accepted: false, readonly error: BrokerError }

const HTTP: SubmitOptions = { origin: 'http' }

/**
 * `POST /api/events` (the CloudEvents HTTP binding: binary, structured, batch) and
 * `POST /api/mqtt/publish` (`{ topic, payload, qos, retain }`, the topic in MQTT or
 * dotted form, a payload that is only an event's data wrapped in a CloudEvent). Both
 * run the same pipeline as an MQTT publish: 202 when accepted; 400, 413 or 422 with
 * the reason code otherwise, and the rejected event is dead-lettered like any other.
 */
export const ingressRoutes: FastifyPluginAsync<IngressSource> = async function ingressRoutes (app, source) {
  // every content type arrives as raw bytes: the binding decides what they are, and the size check comes first
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', { parseAs: 'buffer' }, function rawBody (_req, body, done) { done(null, body) })
  const bodyLimit = Math.max(source.maxPayloadBytes, source.httpBodyBytes)
  // a body over bodyLimit is refused by fastify before it is read: count it as the reason it is
  app.setErrorHandler(function ingressError (err: unknown) {
    if (typeof err === 'object' && err !== null && 'code' in err && err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      // the body was not read: its size is only known to be over the limit
      source.tooLarge('', source.maxPayloadBytes + 1)
    }
    throw err
  })
  const events = new EventIngress(source)

  app.post('/api/events', { bodyLimit }, async (req, reply) => {
    const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0)
    const bound = fromHttp(req.headers, body)
    const outcomes: Outcome[] = []
    for (const event of bound.events) {
      const outcome = await events.publish(event)
      // an unreadable body holds no event to keep in the dead-letter store beyond its bytes
      if (!outcome.accepted && !event.ok) source.keep({ topic: '', payload: body, qos: 1 }, outcome.error, HTTP)
      outcomes.push(outcome)
    }
    return bound.mode === 'batch' ? await answerBatch(reply, outcomes) : await answer(reply, outcomes[0])
  })

  app.post<{ Body: PublishBody }>('/api/mqtt/publish', { bodyLimit, preValidation: publishBodyReader(source), schema: { body: PUBLISH_BODY } }, async (req, reply) => {
    const { qos = 1, retain = false } = req.body
    const topic = dottedToTopic(req.body.topic)
    const problem = topicFilterProblem(topic)
    if (problem !== undefined || topic.includes('+') || topic.includes('#')) {
      throw new BadRequestError(`topic ${JSON.stringify(req.body.topic)} ${problem ?? 'must not contain wildcards'}`)
    }
    const given = req.body.payload
    const wrapped = source.cloudEventTopic(topic) ? wrapData(topic, given) : undefined
    const payload = Buffer.from(wrapped?.text ?? (typeof given === 'string' ? given : JSON.stringify(given)))
    if (payload.length > source.maxPayloadBytes) return await answer(reply, events.tooLarge(payload.length, topic))
    const refusal = await source.submit({ topic, payload, qos, retain }, HTTP)
    return await answer(reply, refusal === undefined ? { accepted: true, topic, ...(wrapped === undefined ? {} : { id: wrapped.id }) } : { accepted: false, error: refusal })
  })
}

/** What `POST /api/events` does with each event the binding read: checked as a CloudEvent, then published on its type's topic. */
class EventIngress {
  readonly #source: IngressSource
  readonly #envelope = new EnvelopeChecker()

  constructor (source: IngressSource) {
    this.#source = source
  }

  async publish (bound: BoundEvent): Promise<Outcome> {
    if (!bound.ok) return { accepted: false, error: new EventRejectedError(bound.reason, '', bound.errors, 'dlq') }
    const payload = Buffer.from(JSON.stringify(bound.event))
    const id = typeof bound.event.id === 'string' ? bound.event.id : undefined
    // this route takes CloudEvents only, whatever the validation rules say about the topic
    const checked = this.#envelope.checkValue(bound.event)
    if (!checked.ok) return this.#refuse(payload, new EventRejectedError(checked.reason, '', checked.errors, 'dlq', id === undefined ? {} : { id }))
    const type = bound.event.type
    const topic = typeof type === 'string' && type !== '' && topicFilterProblem(type) === undefined && !type.includes('/') ? typeToTopic(type) : ''
    if (payload.length > this.#source.maxPayloadBytes) return this.tooLarge(payload.length, topic)
    if (topic === '') {
      // a type that makes no topic: refuse and keep it here, there is no topic to run the pipeline on
      const problem = { path: '/type', message: `must map to an MQTT topic: no "/", "+" or "#", got ${JSON.stringify(type)}` }
      return this.#refuse(payload, new EventRejectedError('invalid_cloudevent', '', [problem], 'dlq', id === undefined ? {} : { id }))
    }
    const refusal = await this.#source.submit({ topic, payload, qos: 1 }, HTTP)
    return refusal === undefined ? { accepted: true, topic, ...(id === undefined ? {} : { id }) } : { accepted: false, error: refusal }
  }

  /** Refused for its size: counted and audited, not kept (nothing was read to keep). */
  tooLarge (bytes: number, topic: string): Outcome {
    this.#source.tooLarge(topic, bytes)
    return { accepted: false, error: new EventRejectedError('payload_too_large', topic, [{ path: '', message: `payload of ${bytes} bytes is over the limit of ${this.#source.maxPayloadBytes}` }], 'dlq') }
  }

  /** Refused before the pipeline: kept in the dead-letter store here, on no topic. */
  #refuse (payload: Buffer, error: EventRejectedError): Outcome {
    this.#source.keep({ topic: '', payload, qos: 1 }, error, HTTP)
    return { accepted: false, error }
  }
}

interface PublishBody { topic: string, payload: unknown, qos?: 0 | 1 | 2, retain?: boolean }

const PUBLISH_BODY = {
  type: 'object',
  additionalProperties: false,
  required: ['topic', 'payload'],
  properties: {
    topic: { type: 'string', minLength: 1 },
    payload: {},
    qos: { enum: [0, 1, 2] },
    retain: { type: 'boolean' }
  }
} as const

/** `POST /api/mqtt/publish`'s body as JSON: the raw-body parser leaves it to this route, which parses and checks it before its schema. */
function publishBodyReader (source: IngressSource): preValidationAsyncHookHandler {
  return async function readPublishBody (req) {
    const raw = req.body
    if (!Buffer.isBuffer(raw)) return
    try {
      req.body = JSON.parse(raw.toString('utf8'))
    } catch (err: unknown) {
      throw new BadRequestError(`body is not JSON: ${err instanceof Error ? err.message : String(err)}`)
    }
    // a payload given as JSON is serialized again below, and JSON.stringify recurses: refuse
    // it as the pipeline refuses such a payload given as a string (other members of the body
    // are scalars, or removed by the schema unread)
    const body: unknown = req.body
    const payload: unknown = typeof body === 'object' && body !== null && 'payload' in body ? body.payload : undefined
    if (mayNestDeeperThan(raw.length) && nestedDeeperThan(payload)) {
      // kept as /api/events keeps a body it cannot read: the bytes, on no topic (the topic is unchecked)
      const error = new EventRejectedError('invalid_json', '', tooDeep('/payload', MAX_JSON_DEPTH).errors, 'dlq')
      source.keep({ topic: '', payload: raw, qos: 1 }, error, HTTP)
      throw error
    }
  }
}

/** A batch's answer: 202 with each event's topic and id when none was refused (a duplicate is no refusal: it was accepted before), else the refused ones. */
async function answerBatch (reply: FastifyReply, outcomes: readonly Outcome[]): Promise<FastifyReply> {
  const isDuplicate = (o: Outcome): boolean => !o.accepted && o.error instanceof DuplicateEventError
  const refused = outcomes.flatMap((o, index) => o.accepted || isDuplicate(o) ? [] : [{ index, error: o.error }])
  const first = refused[0]
  if (first === undefined) {
    return await reply.code(202).send({
      accepted: outcomes.filter((o) => o.accepted).length,
      events: outcomes.map((o) => o.accepted ? { topic: o.topic, id: o.id } : o.error instanceof DuplicateEventError ? { topic: o.error.topic, id: o.error.event.id, duplicate: true } : {})
    })
  }
  return await reply.code(httpAnswerOf(first.error).status).send(errorBody(
    reasonOf(first.error),
    `${refused.length} of ${outcomes.length} events rejected (the others were accepted and published)`,
    refused.map(({ index, error }) => ({ index, reason: reasonOf(error), errors: problemsOf(error) }))
  ))
}

/**
 * The CloudEvent around a payload that is only an event's data, on a topic whose
 * publishes must be CloudEvents, or `undefined` for a payload to publish as it is:
 * a CloudEvent (a JSON object with `specversion`, checked as it is), or a string that
 * is not JSON (refused as `invalid_json`, as over MQTT). The event's `type` is the
 * topic's, `source` this route, `id` a new UUID, `time` now; then it is checked like
 * any other.
 */
function wrapData (topic: string, given: unknown): { text: string, id: string } | undefined {
  let data: unknown = given
  if (typeof given === 'string') {
    try {
      data = JSON.parse(given)
    } catch {
      // not JSON: published as sent, and refused as invalid_json by validation
      return undefined
    }
    // too deep to serialize again: published as sent, and refused for its depth by validation
    if (mayNestDeeperThan(given.length) && nestedDeeperThan(data)) return undefined
  }
  if (typeof data === 'object' && data !== null && !Array.isArray(data) && 'specversion' in data) return undefined
  const id = randomUUID()
  const event = { specversion: '1.0', id, source: WRAPPED_SOURCE, type: topicToType(topic), time: new Date().toISOString(), datacontenttype: 'application/json', data }
  return { text: JSON.stringify(event), id }
}

async function answer (reply: FastifyReply, outcome: Outcome | undefined): Promise<FastifyReply> {
  if (outcome === undefined) return await reply.code(400).send(errorBody('invalid_cloudevent', 'the request holds no event'))
  if (outcome.accepted) return await reply.code(202).send({ accepted: true, topic: outcome.topic, ...(outcome.id === undefined ? {} : { id: outcome.id }) })
  if (outcome.error instanceof DuplicateEventError) {
    // accepted before: the sender's retry succeeded, nothing new was published
    return await reply.code(200).send({ duplicate: true, topic: outcome.error.topic, id: outcome.error.event.id })
  }
  if (!(outcome.error instanceof EventRejectedError)) throw outcome.error
  return await reply.code(httpAnswerOf(outcome.error).status).send(errorBody(outcome.error.reason, outcome.error.message, outcome.error.problems))
}

function reasonOf (error: BrokerError): RejectReason | string {
  return error instanceof EventRejectedError ? error.reason : error.code
}

function problemsOf (error: BrokerError): readonly EventProblem[] {
  return error instanceof EventRejectedError ? error.problems : [{ path: '', message: error.message }]
}
