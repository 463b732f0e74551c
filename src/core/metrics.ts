import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import type { Origin, Transport } from './context.js'
import { TRANSPORTS, type Connections } from './transport/connections.js'

const ORIGINS: readonly Origin[] = [...TRANSPORTS, 'http', 'internal']

/**
 * A counter whose values live elsewhere, as plain numbers (a labelled prom-client
 * inc() hashes its labels on every call), copied in when /metrics is scraped.
 */
function scrapedCounter<L extends string> (registry: Registry, name: string, help: string, label: L, values: () => Iterable<readonly [string, number]>): void {
  new Counter({
    name,
    help,
    labelNames: [label],
    registers: [registry],
    collect () {
      this.reset()
      for (const [value, n] of values()) {
        const labels: Partial<Record<L, string>> = {}
        labels[label] = value
        this.inc(labels, n)
      }
    }
  })
}

/** The broker's own metrics, on a registry of its own (never prom-client's global one). */
export class CoreMetrics {
  readonly registry = new Registry()
  // The per-message counters are plain numbers, copied into prom-client when /metrics
  // is scraped: a labelled prom-client inc() hashes its labels on every call.
  readonly #received: Record<Origin, number> = { tcp: 0, tls: 0, ws: 0, wss: 0, http: 0, internal: 0 }
  readonly #delivered: Record<Transport, number> = { tcp: 0, tls: 0, ws: 0, wss: 0 }
  readonly #errors: Counter<'component'>
  #accepted = 0
  #rejected = 0
  #duplicates = 0
  #replayed = 0
  readonly #limitHits = new Map<string, number>()
  readonly #dropped = new Map<string, number>()
  readonly #events: Counter<'outcome' | 'reason'>

  /**
   * @param connections live sockets, read at scrape time for bytes and accepted connections
   * @param clientsByTransport counts connected MQTT clients, read at scrape time
   */
  constructor (connections: Connections, clientsByTransport: () => ReadonlyMap<Transport, number>) {
    const registry = this.registry
    collectDefaultMetrics({ register: registry, prefix: 'ce_broker_' })

    const received = this.#received
    const delivered = this.#delivered
    scrapedCounter(registry, 'ce_broker_publishes_received_total', 'PUBLISH packets received from clients, before any check, by transport',
      'transport', () => ORIGINS.map((origin) => [origin, received[origin]]))
    scrapedCounter(registry, 'ce_broker_messages_delivered_total', 'PUBLISH packets forwarded to subscribed clients, by the subscriber\'s transport',
      'transport', () => TRANSPORTS.map((transport) => [transport, delivered[transport]]))
    scrapedCounter(registry, 'ce_broker_limit_hits_total', 'Connections, publishes and subscriptions refused by a limit of limits.*, by limit',
      'limit', () => this.#limitHits)
    scrapedCounter(registry, 'ce_broker_dropped_total', 'Messages not delivered to a subscriber, by reason (slow_consumer: its outbound queue was full)',
      'reason', () => this.#dropped)
    scrapedCounter(registry, 'ce_broker_connections_total', 'Connections accepted, by transport',
      'transport', () => TRANSPORTS.map((transport) => [transport, connections.accepted(transport)]))
    for (const [direction, help] of [['received', 'read from'], ['sent', 'written to']] as const) {
      scrapedCounter(registry, `ce_broker_bytes_${direction}_total`, `Bytes ${help} client sockets, framing included, by transport`,
        'transport', () => TRANSPORTS.map((transport) => [transport, connections.bytes(transport)[direction]]))
    }

    const replayed = (): number => this.#replayed
    new Counter({
      name: 'ce_broker_journal_replayed_total',
      help: 'Accepted events published again from a node\'s journal (after a crash, a lost ack or a reaped node): their subscribers may have seen them twice',
      registers: [registry],
      collect () {
        this.reset()
        this.inc(replayed())
      }
    })

    const accepted = (): number => this.#accepted
    this.#events = new Counter({
      name: 'ce_broker_events_total',
      help: 'Events on validated topics by outcome (accepted, rejected, duplicate) and, for rejections, reason',
      labelNames: ['outcome', 'reason'] as const,
      registers: [registry],
      collect () {
        // accepted events are the hot path: a plain number, copied here at scrape time
        this.remove({ outcome: 'accepted', reason: '' })
        this.inc({ outcome: 'accepted', reason: '' }, accepted())
      }
    })
    this.#errors = new Counter({
      name: 'ce_broker_errors_total',
      help: 'Failures reported with no caller to return to (plugins, queues, persistence), by component',
      labelNames: ['component'] as const,
      registers: [registry]
    })
    new Gauge({
      name: 'ce_broker_connected_clients',
      help: 'MQTT clients connected now, by transport',
      labelNames: ['transport'] as const,
      registers: [registry],
      collect () {
        const counts = clientsByTransport()
        for (const transport of TRANSPORTS) this.set({ transport }, counts.get(transport) ?? 0)
      }
    })
  }

  /** A limit of `limits` refused something (`connections`, `topic_bytes`, ...). */
  limitHit (limit: string): void {
    this.#limitHits.set(limit, (this.#limitHits.get(limit) ?? 0) + 1)
  }

  /** A message was not delivered to one subscriber (`slow_consumer`). */
  dropped (reason: string): void {
    this.#dropped.set(reason, (this.#dropped.get(reason) ?? 0) + 1)
  }

  /** An accepted event was published again from a journal. */
  journalReplayed (): void {
    this.#replayed++
  }

  publishReceived (origin: Origin): void {
    this.#received[origin]++
  }

  messageDelivered (transport: Transport): void {
    this.#delivered[transport]++
  }

  /** Count an event outcome; `reason` only for rejections. */
  event (outcome: 'accepted' | 'rejected' | 'duplicate', reason = ''): void {
    if (outcome === 'accepted') this.#accepted++
    else {
      this.#events.inc({ outcome, reason })
      if (outcome === 'rejected') this.#rejected++
      else this.#duplicates++
    }
  }

  /** Events counted since start, by outcome (what the dashboard charts). */
  eventTotals (): { accepted: number, rejected: number, duplicate: number } {
    return { accepted: this.#accepted, rejected: this.#rejected, duplicate: this.#duplicates }
  }

  error (component: string): void {
    this.#errors.inc({ component })
  }
}
