import { join } from 'node:path'
import type { BrokerInput } from '../src/index.js'

/** Fan-in at QoS 0: many raw publishers, one wildcard subscriber counting what arrives. */
export interface FaninLoad {
  readonly mode: 'fanin-qos0'
  /** Publisher connections. */
  readonly publishers: number
  /** PUBLISH packets concatenated into the Buffer each `write()` hands over; identical but for the id's counter with `uniqueIds`. */
  readonly packetsPerWrite: number
  /** Topic every PUBLISH goes to. */
  readonly topic: string
  /** The subscriber's topic filter, subscribed at QoS 0. */
  readonly subscription: string
  /** Size of the CloudEvent JSON payload, in bytes. */
  readonly payloadBytes: number
  /**
   * Give every event its own CloudEvent `id` (`unique-ids.ts`: per run, publisher and
   * counter, same length as the fixed id). Needed wherever ce-broker drops duplicates
   * (idempotency), which would otherwise deliver only the first event. `false`: every
   * PUBLISH is identical.
   */
  readonly uniqueIds: boolean
}

/** What the load generator does; one member per mode `loadgen.ts` implements. */
export type LoadSpec = FaninLoad

/** What the server process (`server.ts`) gives a scenario's `ceBroker()`. */
export interface ServerContext {
  /** `redis://` URL of the redis-server `run.js` started for this run; throws unless the scenario sets `redis`. */
  readonly redisUrl: () => string
  /** A fresh empty directory, made on the first call, removed with its contents once the broker has closed. */
  readonly tempDir: () => string
}

/** One benchmark: how to start each broker and what load to put on it. */
export interface Scenario {
  /** Name printed in the `bench <name> ...` result line; kebab-case, unique. */
  readonly name: string
  /**
   * `createBroker()` input for the ce-broker side (config, plugins), applied over the
   * benchmark base (MQTT and HTTP on port 0, `logLevel: 'silent'`). A function so that
   * plugin entries, files and URLs are made inside the server process only. The aedes
   * side always runs raw Aedes with its default options: it is the baseline.
   */
  readonly ceBroker: (server: ServerContext) => BrokerInput
  /**
   * `run.js` starts an empty redis-server on 127.0.0.1 for each ce-broker run (never for
   * raw Aedes) and stops it after; `ceBroker()` gets its URL from `redisUrl()`. When
   * `redis-server` is not on the PATH the scenario is skipped, not failed.
   */
  readonly redis?: boolean
  readonly load: LoadSpec
}

/** 8 publishers of 1 KiB `albergue.v1.booking.reserved` events, one `albergue/#` subscriber. */
const FANIN_LOAD: FaninLoad = {
  mode: 'fanin-qos0',
  publishers: 8,
  packetsPerWrite: 64,
  topic: 'albergue/v1/booking/reserved',
  subscription: 'albergue/#',
  payloadBytes: 1024,
  uniqueIds: false
}

/** The same load with every event's `id` unique, for configs that drop duplicates. */
const UNIQUE_FANIN_LOAD: FaninLoad = { ...FANIN_LOAD, uniqueIds: true }

/** The audit file of a pipeline scenario: in the server's temporary directory, removed with it. */
function auditFile (server: ServerContext): string {
  return join(server.tempDir(), 'audit.jsonl')
}

/** Every scenario `npm run bench` runs, in this order. Add new ones here. */
export const SCENARIOS: readonly Scenario[] = [
  {
    name: 'fanin-qos0',
    // the broker alone: no validation rule, so no check runs on the publish path. Idempotency
    // and audit act on validated topics only; off all the same, so that nothing is loaded
    ceBroker: function faninCeBroker () {
      return { validation: { rules: [] }, idempotency: { enabled: false }, audit: { enabled: false } }
    },
    load: FANIN_LOAD
  },
  {
    name: 'fanin-qos0-validated',
    // validation alone: albergue/# checked against the bundled schemas on the default
    // validation workers, dead letters on; no idempotency, no audit
    ceBroker: function faninValidatedCeBroker () {
      return { idempotency: { enabled: false }, audit: { enabled: false } }
    },
    load: FANIN_LOAD
  },
  {
    name: 'fanin-qos0-pipeline',
    // the default pipeline (validation, idempotency in memory, audit on $audit/...) plus
    // a durable audit log: every record also appended to a JSON-lines file
    ceBroker: function faninPipelineCeBroker (server) {
      return { audit: { file: auditFile(server) } }
    },
    load: UNIQUE_FANIN_LOAD
  },
  {
    name: 'fanin-qos0-pipeline-redis',
    // the same on Redis: persistence, routing, idempotency keys (SET NX PX) and the audit
    // stream (XADD) in a redis-server of its own; the audit file as well
    ceBroker: function faninPipelineRedisCeBroker (server) {
      return { redis: { url: server.redisUrl() }, audit: { file: auditFile(server) } }
    },
    redis: true,
    load: UNIQUE_FANIN_LOAD
  }
]

/** The scenario called `name`; throws when there is none, naming the known ones. */
export function findScenario (name: string | undefined): Scenario {
  const scenario = SCENARIOS.find((s) => s.name === name)
  if (scenario === undefined) {
    throw new Error(`unknown scenario ${JSON.stringify(name)} (known: ${SCENARIOS.map((s) => s.name).join(', ')})`)
  }
  return scenario
}
