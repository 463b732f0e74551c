import type { WebhookCounters } from '../protocol.js'

/** A broker under test, as `server.ts` drives it. */
export interface BenchServer {
  /** The MQTT/TCP port it bound on 127.0.0.1. */
  readonly port: number
  /** `http://127.0.0.1:<port>` of its HTTP API; only a broker that has one (ce-broker). */
  readonly httpUrl?: string
  /** Stop listening, close clients, release everything that keeps the process alive. */
  readonly close: () => Promise<void>
  /** Its webhook counters so far; only a broker that has webhooks (ce-broker). */
  readonly webhookCounters?: () => Promise<WebhookCounters>
}
