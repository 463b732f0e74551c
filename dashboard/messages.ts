/** What the broker sends the dashboard: audit records, node stats, dead letters, webhooks, the catalog. */
export interface AuditRecord {
  at: string
  node: string
  outcome: 'accepted' | 'rejected' | 'duplicate' | 'refused'
  reason?: string
  clientId: string | null
  username?: string
  topic: string
  event: { id?: string, type?: string, source?: string, time?: string }
  payload?: unknown
  payloadBase64?: string
}

export interface WebhookState {
  id: string
  service_id: string
  webhook_url: string
  topic_filters: string[]
  /** Attribute filters as given (Knative's shape), when the subscription has any. */
  filters?: unknown[]
  ordering?: 'none' | 'partitionkey' | 'subject'
  disabled?: { reason: string }
  breaker: 'closed' | 'half-open' | 'open'
  /** Requests it may have in flight: its adaptive limit (summed over the nodes of a cluster). */
  concurrency?: number
  queued: number
  delivered: number
  failed: number
  lastStatus: number | null
  lastAt: string | null
}

export interface NodeStats {
  node: string
  at: string
  intervalMs: number
  clients: number
  events: Record<Outcome, number>
  webhooks: WebhookState[]
}

export interface DeadLetter {
  id: string
  record: {
    time: string
    data: {
      reason: string
      errors?: Array<{ path: string, message: string }>
      topic: string
      clientId: string | null
      payload?: unknown
      payloadBase64?: string
      subscription?: string
      lastStatus?: number
    }
  }
}

export interface CatalogEntry {
  type: string
  topic: string
  schema: null | { file: string, title?: string, draft: string, version: number, history: Array<{ version: number, registeredAt: string }>, fields: Array<{ path: string, type: string, required: boolean, format?: string, description?: string }> }
  publishers: Array<{ publisher: string, lastSeen: string }>
  subscribers: { webhooks: Array<{ id: string, service_id: string, webhook_url: string, filters: string[] }>, mqtt: Array<{ clientId: string, filter: string, qos: number }> }
}

/** One type of the registry, as `GET /api/schemas` lists it. */
export interface SchemaListing {
  type: string
  file: string
  version: number
  versions: number
  compatibility: string
  mode: 'enforce' | 'shadow'
  shadowFailures: number
}

export type Outcome = 'accepted' | 'rejected' | 'duplicate'
export const OUTCOMES: readonly Outcome[] = ['accepted', 'rejected', 'duplicate']

