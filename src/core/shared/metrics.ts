import { Counter, Gauge, type Registry } from 'prom-client'

/** Counts by group name, kept as plain numbers and copied in when /metrics is scraped (no label hashing per message). */
export class SharedMetrics {
  readonly #delivered = new Map<string, number>()
  readonly #handovers = new Map<string, number>()
  readonly #lost = new Map<string, number>()

  /**
   * @param members this node's members per group name, read at scrape time
   */
  constructor (registry: Registry, members: () => ReadonlyMap<string, number>) {
    counter(registry, 'ce_broker_shared_delivered_total', 'Messages delivered through shared subscriptions ($share/<group>/<filter>) by this node, by group', this.#delivered)
    counter(registry, 'ce_broker_shared_handovers_total', 'QoS 1/2 messages of a shared subscription member that left unacknowledged, handed to another member, by group', this.#handovers)
    counter(registry, 'ce_broker_shared_unrouted_total', 'Messages of a shared subscription group that no member could take any more (the group emptied, or no member was reachable), by group', this.#lost)
    new Gauge({
      name: 'ce_broker_shared_members',
      help: 'Members of shared subscription groups connected to this node, by group',
      labelNames: ['group'] as const,
      registers: [registry],
      collect () {
        this.reset()
        for (const [group, n] of members()) this.set({ group }, n)
      }
    })
  }

  delivered (group: string): void {
    this.#delivered.set(group, (this.#delivered.get(group) ?? 0) + 1)
  }

  handedOver (group: string): void {
    this.#handovers.set(group, (this.#handovers.get(group) ?? 0) + 1)
  }

  unrouted (group: string): void {
    this.#lost.set(group, (this.#lost.get(group) ?? 0) + 1)
  }

  /** The last member of `group` on this node left: its series go, so the label values stay those of groups in use. */
  forget (group: string): void {
    this.#delivered.delete(group)
    this.#handovers.delete(group)
    this.#lost.delete(group)
  }
}

function counter (registry: Registry, name: string, help: string, values: ReadonlyMap<string, number>): void {
  new Counter({
    name,
    help,
    labelNames: ['group'] as const,
    registers: [registry],
    collect () {
      this.reset()
      for (const [group, n] of values) this.inc({ group }, n)
    }
  })
}
