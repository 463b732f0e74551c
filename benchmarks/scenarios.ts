import type { BrokerInput } from '../src/index.js'

/** Fan-in at QoS 0: many raw publishers, one wildcard subscriber counting what arrives. */
export interface FaninLoad {
  readonly mode: 'fanin-qos0'
  /** Publisher connections. */
  readonly publishers: number
  /** Identical PUBLISH packets concatenated into the Buffer each `write()` hands over. */
  readonly packetsPerWrite: number
  /** Topic every PUBLISH goes to. */
  readonly topic: string
  /** The subscriber's topic filter, subscribed at QoS 0. */
  readonly subscription: string
  /** Size of the CloudEvent JSON payload, in bytes. */
  readonly payloadBytes: number
}

/** What the load generator does; one member per mode `loadgen.ts` implements. */
export type LoadSpec = FaninLoad

/** One benchmark: how to start each broker and what load to put on it. */
export interface Scenario {
  /** Name printed in the `bench <name> ...` result line; kebab-case, unique. */
  readonly name: string
  /**
   * `createBroker()` input for the ce-broker side (config, plugins), applied over the
   * benchmark base (MQTT and HTTP on port 0, `logLevel: 'silent'`). A function so that
   * plugin entries are built inside the server process only. The aedes side always
   * runs raw Aedes with its default options: it is the baseline.
   */
  readonly ceBroker: () => BrokerInput
  readonly load: LoadSpec
}

/** 8 publishers of 1 KiB `albergue.v1.booking.reserved` events, one `albergue/#` subscriber. */
const FANIN_LOAD: FaninLoad = {
  mode: 'fanin-qos0',
  publishers: 8,
  packetsPerWrite: 64,
  topic: 'albergue/v1/booking/reserved',
  subscription: 'albergue/#',
  payloadBytes: 1024
}

/** Every scenario `npm run bench` runs, in this order. Add new ones here. */
export const SCENARIOS: readonly Scenario[] = [
  {
    name: 'fanin-qos0',
    // the broker alone: no validation rule, so no check runs on the publish path
    ceBroker: function faninCeBroker () { return { validation: { rules: [] } } },
    load: FANIN_LOAD
  },
  {
    name: 'fanin-qos0-validated',
    // the default config: albergue/# validated against the bundled schemas, dead letters on
    ceBroker: function faninValidatedCeBroker () { return {} },
    load: FANIN_LOAD
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
