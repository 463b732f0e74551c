import { createBroker, type BrokerInput } from '../../src/index.js'
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
    close: async () => { await broker.close() }
  }
}
