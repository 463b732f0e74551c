import { compileFilter, typeToTopic, type MqttSubscriber } from '../../src/core/index.js'
import type { SchemaSummary } from '../schema-validation/index.js'

/** A registered schema as the catalog shows it. */
export type CatalogSchema = SchemaSummary

/** A webhook subscription as the catalog lists it among a type's subscribers. */
export interface CatalogWebhook {
  readonly id: string
  readonly service_id: string
  readonly webhook_url: string
  readonly filters: readonly string[]
  /** How events are delivered: `binary` (`ce-*` headers, body = `data`) or `structured` (the event as the body). */
  readonly mode: 'binary' | 'structured'
}

/** An MQTT subscription: a client id and the filter it subscribed with. */
export type CatalogMqttSubscription = MqttSubscriber

/** One event type: its schema, who published it, who receives it. */
export interface CatalogEntry {
  readonly type: string
  readonly topic: string
  /** `null` for a type seen published that has no schema. */
  readonly schema: CatalogSchema | null
  readonly publishers: ReadonlyArray<{ readonly publisher: string, readonly lastSeen: string }>
  readonly subscribers: {
    readonly webhooks: readonly CatalogWebhook[]
    readonly mqtt: readonly CatalogMqttSubscription[]
  }
}

export interface Catalog {
  readonly generatedAt: string
  readonly node: string
  readonly types: readonly CatalogEntry[]
}

/** Where the catalog's parts come from. */
export interface CatalogSources {
  readonly node: string
  readonly schemas: () => readonly CatalogSchema[]
  readonly publishers: () => Promise<ReadonlyArray<{ readonly type: string, readonly publisher: string, readonly lastSeen: string }>>
  readonly webhooks: () => readonly CatalogWebhook[]
  /** MQTT subscriptions whose filter matches `topic`. */
  readonly mqtt: (topic: string) => Promise<readonly CatalogMqttSubscription[]>
}

/** Every type that has a schema or was published, sorted by type. */
export async function buildCatalog (sources: CatalogSources): Promise<Catalog> {
  const schemas = new Map(sources.schemas().map((schema) => [schema.type, schema]))
  const publishers = new Map<string, Array<{ publisher: string, lastSeen: string }>>()
  for (const { type, publisher, lastSeen } of await sources.publishers()) {
    let list = publishers.get(type)
    if (list === undefined) publishers.set(type, list = [])
    list.push({ publisher, lastSeen })
  }
  const webhooks = sources.webhooks().map((webhook) => ({ webhook, matches: webhook.filters.map(compileFilter) }))
  const types = [...new Set([...schemas.keys(), ...publishers.keys()])].sort()
  const entries = await Promise.all(types.map(async (type): Promise<CatalogEntry> => {
    const topic = typeToTopic(type)
    return {
      type,
      topic,
      schema: schemas.get(type) ?? null,
      publishers: (publishers.get(type) ?? []).sort((a, b) => a.publisher.localeCompare(b.publisher)),
      subscribers: {
        webhooks: webhooks.filter(({ matches }) => matches.some((match) => match(topic))).map(({ webhook }) => webhook),
        mqtt: [...await sources.mqtt(topic)].sort((a, b) => a.clientId.localeCompare(b.clientId) || a.filter.localeCompare(b.filter))
      }
    }
  }))
  return { generatedAt: new Date().toISOString(), node: sources.node, types: entries }
}

/** The catalog as Markdown: one section per type, for the teams' wiki. */
export function catalogMarkdown (catalog: Catalog): string {
  const lines = ['# Event catalog', '', `Generated ${catalog.generatedAt} by ${catalog.node}. Publishers are those seen since the broker started (with Redis: by any node); subscribers are webhook subscriptions and MQTT subscriptions whose filter matches the type's topic.`, '']
  if (catalog.types.length === 0) lines.push('No event type is registered or has been published.', '')
  for (const entry of catalog.types) {
    lines.push(`## ${entry.type}`, '', `Topic: \`${entry.topic}\``, '')
    if (entry.schema === null) {
      lines.push('No schema is registered for this type.', '')
    } else {
      const { schema } = entry
      if (schema.title !== undefined) lines.push(cell(schema.title), '')
      lines.push(`Schema: \`${schema.file}\` (${schema.draft}${schema.id === undefined ? '' : `, \`${schema.id}\``}), version ${schema.version}; compatibility ${schema.compatibility}, mode ${schema.mode}`, '')
      lines.push('Versions:', '')
      for (const v of schema.history) lines.push(`- ${v.version}: registered ${v.registeredAt === '' ? 'at start-up' : v.registeredAt}${v.file === undefined ? ' through the API' : ` from \`${v.file}\``}`)
      lines.push('')
      if (schema.fields.length === 0) {
        lines.push('`data` has no declared fields.', '')
      } else {
        lines.push('| field | type | required | description |', '| --- | --- | --- | --- |')
        for (const field of schema.fields) {
          const type = field.format === undefined ? field.type : `${field.type} (${field.format})`
          lines.push(`| \`${field.path}\` | ${cell(type)} | ${field.required ? 'yes' : 'no'} | ${cell(field.description ?? '')} |`)
        }
        lines.push('')
      }
    }
    lines.push('Publishers seen:', '')
    if (entry.publishers.length === 0) lines.push('- none yet')
    for (const { publisher, lastSeen } of entry.publishers) lines.push(`- \`${publisher}\` (last ${lastSeen})`)
    lines.push('', 'Subscribers:', '')
    const { webhooks, mqtt } = entry.subscribers
    if (webhooks.length === 0 && mqtt.length === 0) lines.push('- none')
    for (const webhook of webhooks) lines.push(`- webhook \`${webhook.service_id}\` → ${webhook.webhook_url} (${webhook.filters.map((f) => `\`${f}\``).join(', ')})`)
    for (const sub of mqtt) lines.push(`- MQTT \`${sub.clientId}\` on \`${sub.filter}\` (QoS ${sub.qos})`)
    lines.push('')
  }
  return lines.join('\n')
}

/** Text safe inside a Markdown table cell. */
function cell (text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ')
}
