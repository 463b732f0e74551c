import { createHash } from 'node:crypto'
import type { Catalog, CatalogEntry, CatalogWebhook } from './catalog.js'
import { bundleSchemas, uniqueKey, type RegistryDocument } from './asyncapi-schemas.js'
import type { DescribedListeners } from './asyncapi-servers.js'

/** A type's latest registered version, as the schema registry lists it. */
export interface RegisteredSchema {
  readonly type: string
  readonly file: string
  readonly id?: string
  readonly draft: string
  readonly schema: object
  readonly version: number
  readonly versions: number
  readonly compatibility: string
  readonly mode: string
}

/** What the document is made of. */
export interface AsyncApiInput {
  readonly catalog: Catalog
  /** Every registered type's latest version. */
  readonly schemas: readonly RegisteredSchema[]
  /** The shared definitions their `$ref`s may reach. */
  readonly definitions: readonly RegistryDocument[]
  readonly listeners: DescribedListeners
  /** The broker's package version. */
  readonly version: string
}

/** An AsyncAPI 3.0 document, as plain JSON. */
export interface AsyncApiDocument {
  readonly asyncapi: '3.0.0'
  readonly info: { readonly title: string, readonly version: string, readonly description: string }
  readonly defaultContentType: string
  readonly servers: DescribedListeners['servers']
  readonly channels: Readonly<Record<string, object>>
  readonly operations: Readonly<Record<string, object>>
  readonly components: {
    readonly schemas: Readonly<Record<string, object>>
    readonly messages: Readonly<Record<string, object>>
    readonly securitySchemes?: Readonly<Record<string, object>>
  }
}

const CONTENT_TYPE = 'application/cloudevents+json'
/** QoS 1: the broker acknowledges a publish once it accepted the event, and delivers at least once. */
const MQTT_BINDINGS = { mqtt: { qos: 1, bindingVersion: '0.2.0' } } as const

/**
 * The AsyncAPI 3.0 document of the broker's event traffic, from the live registry and
 * catalog. It describes the broker's clients as one application: a `send` operation is
 * what a client may publish, a `receive` operation what a client gets, by MQTT
 * subscription or webhook. One channel per type (registered, or seen published), its
 * address the type's MQTT topic; its message the CloudEvents envelope with `data` the
 * type's latest registered schema (in `components/schemas`).
 */
export function buildAsyncApi (input: AsyncApiInput): AsyncApiDocument {
  const { catalog, listeners } = input
  const registered = new Map(input.schemas.map((schema) => [schema.type, schema]))
  const bundled = bundleSchemas(input.schemas.map((s) => ({ schema: s.schema, file: s.file, type: s.type })), input.definitions)
  const names = new Set<string>()
  const operationIds = new Set<string>()
  const channels: Record<string, object> = {}
  const operations: Record<string, object> = {}
  const messages: Record<string, object> = {}
  for (const entry of catalog.types) {
    const name = uniqueKey(camelCase(entry.type), names)
    const schema = registered.get(entry.type)
    messages[name] = messageOf(entry, schema, bundled.refs.get(entry.type), listeners.httpBase)
    channels[name] = {
      address: entry.topic.includes('{') || entry.topic.includes('}') ? null : entry.topic,
      title: entry.type,
      description: `CloudEvents of type \`${entry.type}\` on the MQTT topic \`${entry.topic}\`.`,
      messages: { [name]: { $ref: `#/components/messages/${name}` } }
    }
    const on = { channel: { $ref: `#/channels/${name}` }, messages: [{ $ref: `#/channels/${name}/messages/${name}` }] }
    const Name = name.charAt(0).toUpperCase() + name.slice(1)
    operations[uniqueKey(`send${Name}`, operationIds)] = { action: 'send', ...on, ...sendOf(entry) }
    operations[uniqueKey(`receive${Name}`, operationIds)] = { action: 'receive', ...on, ...receiveOf(entry) }
    for (const webhook of entry.subscribers.webhooks) {
      operations[uniqueKey(`receive${Name}ByWebhook${pascalCase(webhook.service_id)}`, operationIds)] = { action: 'receive', ...on, ...webhookOf(entry, webhook) }
    }
  }
  const hasSecurity = Object.keys(listeners.securitySchemes).length > 0
  return {
    asyncapi: '3.0.0',
    info: { title: 'ce-broker events', version: `${input.version}+schemas.${digestOf(input.schemas)}`, description: describe(catalog) },
    defaultContentType: CONTENT_TYPE,
    servers: listeners.servers,
    channels,
    operations,
    components: { schemas: bundled.components, messages, ...(hasSecurity ? { securitySchemes: listeners.securitySchemes } : {}) }
  }
}

function describe (catalog: Catalog): string {
  return [
    `The event traffic of the ce-broker node \`${catalog.node}\`, generated at ${catalog.generatedAt} from its live schema registry and event catalog.`,
    '',
    'The application this document describes is a client of the broker, any of them: a `send` operation is what a client may publish, a `receive` operation is what a client gets, by an MQTT subscription or as a webhook. Which client may do what is the ACL\'s to say.',
    '',
    'Each event is a CloudEvents 1.0 JSON document in structured mode (MQTT 3.1.1 has no headers for binary mode), published on the MQTT topic of its `type`, `.` replaced by `/`. The broker checks `data` against the latest registered version of the type\'s schema before anyone sees it; a refused event is dead-lettered on `$DLQ/<topic>`, and its publisher is told on `$rejections/<clientId>`.',
    '',
    'Publishers are those seen since the broker started (with Redis, by any node); subscribers are the MQTT subscriptions (online clients and persistent sessions) and webhook subscriptions whose filters match each topic. `info.version` is the broker\'s version and a digest of the registered schema versions: it changes when a version is registered.'
  ].join('\n')
}

/** A type's message: the CloudEvents envelope, `data` its latest registered schema. */
function messageOf (entry: CatalogEntry, schema: RegisteredSchema | undefined, dataRef: string | undefined, httpBase: string): object {
  const registry = schema === undefined || dataRef === undefined
    ? 'No schema is registered for this type: its `data` is not checked.'
    : `\`data\` is checked against version ${schema.version} of the registered schema, the latest of ${schema.versions} (\`GET /api/schemas/${entry.type}/versions\` lists them); compatibility ${schema.compatibility}, mode ${schema.mode}${schema.id === undefined ? '' : `; \`$id\` ${schema.id}`}.`
  const title: unknown = schema === undefined ? undefined : Reflect.get(schema.schema, 'title')
  return {
    name: entry.type,
    title: typeof title === 'string' ? title : entry.type,
    summary: `A CloudEvent of type \`${entry.type}\`.`,
    description: `A CloudEvents 1.0 event of type \`${entry.type}\` in structured mode. ${registry}`,
    contentType: CONTENT_TYPE,
    payload: envelopeOf(entry.type, dataRef),
    ...(schema === undefined || dataRef === undefined
      ? {}
      : {
          externalDocs: { description: 'This version in the schema registry', url: `${httpBase}/api/schemas/${encodeURIComponent(entry.type)}/versions/${schema.version}` },
          'x-schema-registry': { version: schema.version, latest: true, versions: schema.versions, file: schema.file, draft: schema.draft, compatibility: schema.compatibility, mode: schema.mode, ...(schema.id === undefined ? {} : { id: schema.id }) }
        })
  }
}

/** The CloudEvents 1.0 envelope the broker accepts for `type` (PRODUCT §2), in JSON Schema. */
function envelopeOf (type: string, dataRef: string | undefined): object {
  const text = (description: string): object => ({ type: 'string', minLength: 1, description })
  return {
    type: 'object',
    required: ['specversion', 'id', 'source', 'type', ...(dataRef === undefined ? [] : ['data'])],
    properties: {
      specversion: { type: 'string', const: '1.0', description: 'The CloudEvents version' },
      id: text('Identifies the event within its source: `source` and `id` are the key a duplicate is known by'),
      source: { type: 'string', format: 'uri-reference', minLength: 1, description: 'Who produced the event' },
      type: { type: 'string', const: type, description: 'The event type; the topic is this with `.` replaced by `/`' },
      time: { type: 'string', format: 'date-time', description: 'When it happened (RFC 3339)' },
      subject: text('What the event is about, within its source'),
      datacontenttype: text('`application/json`: `data` is JSON'),
      dataschema: { type: 'string', format: 'uri', description: 'A version of the type\'s schema (a registry version URL or a schema `$id`): checked against it when it is at least as strict as the latest' },
      data: dataRef === undefined ? { description: 'Not checked: no schema is registered' } : { $ref: dataRef },
      ...(dataRef === undefined ? { data_base64: { type: 'string', contentEncoding: 'base64', description: 'Binary data, instead of `data`' } } : {}),
      correlationid: text('Extension: the flow this event belongs to, carried into dead letters and audit records'),
      causationid: text('Extension: the event that caused this one'),
      traceparent: text('Extension (W3C Trace Context): the trace this event continues; webhook requests carry it on'),
      tracestate: text('Extension (W3C Trace Context): vendor trace state')
    },
    // the names CloudEvents allows for attributes and extensions; `data_base64` cannot carry the JSON `data` a schema checks
    propertyNames: { pattern: dataRef === undefined ? '^([a-z0-9]{1,20}|data_base64)$' : '^[a-z0-9]{1,20}$' },
    additionalProperties: { type: ['string', 'number', 'boolean'], description: 'An extension attribute: a scalar value' }
  }
}

function sendOf (entry: CatalogEntry): object {
  const seen = entry.publishers.map(({ publisher, lastSeen }) => `\`${publisher}\` (last ${lastSeen})`)
  return {
    title: `Publish ${entry.type}`,
    summary: `Publish \`${entry.type}\` events on \`${entry.topic}\`.`,
    description: `Publish at QoS 1: the acknowledgement comes once the broker has decided; a refused event is dead-lettered on \`$DLQ/${entry.topic}\` and its publisher told on \`$rejections/<clientId>\`. Publishers seen: ${seen.length === 0 ? 'none yet' : seen.join(', ')}. (\`http\` stands for \`POST /api/events\` and \`POST /api/mqtt/publish\`, \`internal\` for the broker's own.)`,
    bindings: MQTT_BINDINGS,
    'x-publishers-seen': entry.publishers
  }
}

function receiveOf (entry: CatalogEntry): object {
  const { mqtt } = entry.subscribers
  const listed = mqtt.map(({ clientId, filter, qos }) => `\`${clientId}\` on \`${filter}\` (QoS ${qos})`)
  return {
    title: `Receive ${entry.type}`,
    summary: `Subscribe to \`${entry.topic}\` (or a filter matching it) to receive \`${entry.type}\` events.`,
    description: `Only accepted events are delivered. MQTT subscriptions matching the topic: ${listed.length === 0 ? 'none' : listed.join(', ')}.`,
    bindings: MQTT_BINDINGS,
    'x-mqtt-subscribers': mqtt
  }
}

/** A webhook subscription: named by its service and its URL's host only (a path or query may hold a token). */
function webhookOf (entry: CatalogEntry, webhook: CatalogWebhook): object {
  const host = hostOf(webhook.webhook_url)
  const body = webhook.mode === 'structured' ? 'the body is this event' : '`ce-*` headers, the body is `data`'
  return {
    title: `Receive ${entry.type} as a webhook of ${webhook.service_id}`,
    summary: `Delivered to \`${webhook.service_id}\` at ${host} as a webhook.`,
    description: `Webhook subscription \`${webhook.id}\` of service \`${webhook.service_id}\` (filters ${webhook.filters.map((f) => `\`${f}\``).join(', ')}): each accepted event on \`${entry.topic}\` is POSTed to ${host} in the CloudEvents HTTP binding, ${webhook.mode} mode (${body}), with Standard Webhooks signature headers when the subscription has a secret; retried, then dead-lettered. Not an MQTT subscription.`,
    'x-webhook': { id: webhook.id, service_id: webhook.service_id, host, mode: webhook.mode, topic_filters: webhook.filters }
  }
}

function hostOf (url: string): string {
  try {
    return new URL(url).host
  } catch {
    return '(an invalid URL)'
  }
}

/** A digest of every type's latest version: what `info.version` changes with. */
function digestOf (schemas: readonly RegisteredSchema[]): string {
  const state = schemas.map((s) => `${s.type}\n${s.version}`).sort().join('\n')
  return createHash('sha256').update(state).digest('hex').slice(0, 12)
}

/** `albergue.v1.booking.reserved` → `albergueV1BookingReserved`. */
function camelCase (text: string): string {
  const pascal = pascalCase(text)
  return pascal.charAt(0).toLowerCase() + pascal.slice(1)
}

function pascalCase (text: string): string {
  return text.split(/[^A-Za-z0-9]+/).filter((word) => word !== '').map((word) => word.charAt(0).toUpperCase() + word.slice(1)).join('') || 'Event'
}
