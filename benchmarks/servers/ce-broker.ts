import type { Registry } from 'prom-client'
import { createBroker, type BrokerInput } from '../../src/index.js'
import type { WebhookCounters } from '../protocol.js'
import type { BenchServer } from './bench-server.js'

/**
 * ce-broker as an embedding application would start it, with the scenario's
 * config and plugins over a base of free ports and a silent logger (logging
 * per message would measure pino, not the broker).
 */
export async function startCeBroker (input: BrokerInput): Promise<BenchServer> {
  const broker = await createBroker({
    ...input,
    mqtt: { ...input.mqtt, port: 0 },
    http: { ...input.http, port: 0 },
    logLevel: 'silent'
  })
  return {
    port: broker.ports.mqtt,
    httpUrl: `http://127.0.0.1:${broker.ports.http}`,
    close: async () => { await broker.close() },
    webhookCounters: async () => await webhookCounters(broker.metrics)
  }
}

/**
 * The webhook plugin's counters from the broker's own registry: the values `/metrics`
 * serves, read in-process so that sampling them needs no HTTP request to the loaded broker.
 */
async function webhookCounters (registry: Registry): Promise<WebhookCounters> {
  const byOutcome = new Map<string, number>()
  const deliveries = await registry.getSingleMetric('ce_broker_webhook_deliveries_total')?.get()
  for (const { labels, value } of deliveries?.values ?? []) {
    const outcome = String(labels.outcome)
    byOutcome.set(outcome, (byOutcome.get(outcome) ?? 0) + value)
  }
  const depth = await registry.getSingleMetric('ce_broker_webhook_queue_depth')?.get()
  return {
    delivered: byOutcome.get('delivered') ?? 0,
    failed: byOutcome.get('failed') ?? 0,
    queueFull: byOutcome.get('queue_full') ?? 0,
    queueDepth: depth?.values[0]?.value ?? 0
  }
}
