import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { bundledSchemasDir, type BrokerInput } from '../src/index.js'

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
  /**
   * Filters of further subscribers (one client each, QoS 0), connected before the
   * publishers: they read what they get, and none of it counts in the measured rate.
   */
  readonly watchers?: readonly string[]
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

/**
 * A fixed offered rate for latency: one publisher sends QoS 0 events at `ratePerSec`,
 * paced by a 1 ms timer (each tick sends the events due by then), every one with a
 * unique `id` and its send time in the `sentat` extension attribute (`latency.ts`);
 * one wildcard subscriber takes each event's publish → arrival latency.
 */
export interface PacedLoad {
  readonly mode: 'paced'
  /** Events per second the publisher sends, whatever the broker does with them. */
  readonly ratePerSec: number
  /** Topic every PUBLISH goes to. */
  readonly topic: string
  /** The subscriber's topic filter, subscribed at QoS 0. */
  readonly subscription: string
  /** Size of the CloudEvent JSON payload, in bytes, stamp included. */
  readonly payloadBytes: number
}

/**
 * Fan-in at QoS 1 with a closed loop: each publisher keeps at most `window` PUBLISH
 * packets without a PUBACK, and all publishers together at most `maxUnreceived`
 * packets written but not yet received by the subscriber. The PUBACK window holds the
 * publishers to what the node they publish to takes in; the end-to-end bound holds
 * them to what reaches the subscriber, which closed the loop when routing between
 * nodes had no backpressure of its own (mqemitter-redis, before the inbox streams: see
 * the README's Cluster section), and keeps the scenario comparable. A publisher writes as soon as either leaves room, whatever is
 * free, from a ring of `window` pre-encoded packets. One subscriber counts what arrives.
 */
export interface WindowedLoad {
  readonly mode: 'fanin-qos1-windowed'
  /** Publisher connections. */
  readonly publishers: number
  /** PUBLISH packets (QoS 1) one publisher may have written without their PUBACK yet; at most 65,535 (packet identifiers). */
  readonly window: number
  /** PUBLISH packets all publishers together may have written that the subscriber has not received yet. */
  readonly maxUnreceived: number
  /** Topic every PUBLISH goes to. */
  readonly topic: string
  /** The subscriber's topic filter, subscribed at QoS 0. */
  readonly subscription: string
  /** Size of the CloudEvent JSON payload, in bytes. */
  readonly payloadBytes: number
  /** Give every event its own CloudEvent `id`, as `FaninLoad.uniqueIds`. */
  readonly uniqueIds: boolean
}

/** What the load generator does; one member per mode `loadgen.ts` implements. */
export type LoadSpec = FaninLoad | PacedLoad | WindowedLoad

/** What the server process (`server.ts`) gives a scenario's `ceBroker()`. */
export interface ServerContext {
  /** `redis://` URL of the redis-server `run.js` started for this run; throws unless the scenario sets `redis`. */
  readonly redisUrl: () => string
  /** `http://127.0.0.1:<port>/webhook` of the receiver `run.js` started for this run; throws unless the scenario sets `receiver`. */
  readonly receiverUrl: () => string
  /** A fresh empty directory, made on the first call, removed with its contents once the broker has closed. */
  readonly tempDir: () => string
}

/**
 * Schema versions the ce-broker side registers while it is loaded: from the server
 * process, through the broker's own HTTP API (`schema-registrations.ts`).
 */
export interface SchemaRegistrations {
  /** The CloudEvent type every registration adds a version to. */
  readonly type: string
  /** Time between two registrations, in ms; the first is sent this long after the broker is ready. */
  readonly everyMs: number
  /**
   * The JSON Schema of the `n`th registration (n = 1, 2, ...), called in the server
   * process: each must be new and pass the type's compatibility rule (201), or the run fails.
   */
  readonly schema: (n: number) => object
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
  /**
   * `run.js` starts a webhook receiver (`receiver.js`, a process of its own) for each
   * ce-broker run, before the broker, and stops it after; `ceBroker()` gets its URL from
   * `receiverUrl()`. The ce-broker side's figure is then the receiver's: webhook
   * deliveries/s for a fan-in load, the p99 of publish → webhook received for a paced
   * one. Raw Aedes has no webhooks: its figure stays its MQTT subscriber's.
   */
  readonly receiver?: boolean
  /**
   * Raw Aedes' `net` server sets TCP_NODELAY on its sockets (default off, like ce-broker's
   * MQTT listener). For a latency baseline: with Nagle on, at a paced 1,000 events/s each
   * write to the subscriber waits for the ACK of the one before, which the subscriber's
   * kernel delays by up to 40 ms, and that timer, not Aedes, would set the percentiles.
   */
  readonly aedesNoDelay?: boolean
  /**
   * Least warm-up, in ms, whatever `BENCH_WARMUP_SECONDS` says. For a percentile: the first
   * second or two after a broker starts (cold JIT, modules loaded on first use, connections
   * opened) are slow, and a p99 over a few thousand events is set by its slowest 1 %.
   */
  readonly minWarmupMs?: number
  /**
   * Measure ce-broker twice per round: as one embedded node with `ceBroker()`'s input
   * (the `single=` column), and as two nodes, each with that input plus `redis.url`, sharing
   * one redis-server `run.js` starts (the `ce-broker=` column): publishers connect to
   * node A, the subscriber to node B, so every message crosses Redis. Not with `redis`
   * (the single node is the embedded baseline) nor `receiver`.
   */
  readonly cluster?: boolean
  /**
   * With `cluster`: the subscriber connects to node A as well, beside the publishers, so
   * no message needs to cross Redis; node B only belongs to the cluster (its routes and
   * heartbeats). Measures what being in a cluster costs a node's local traffic.
   */
  readonly subscriberOnIngress?: boolean
  /**
   * The ce-broker side registers schema versions while it is loaded, and each round
   * also measures a `quiet` side: one node with the same input that registers nothing
   * (the `quiet=` column). The run fails unless at least (window / `everyMs`) − 1
   * versions were created (201) inside the window and every registration of the run
   * was answered 201. Not with `cluster`.
   */
  readonly registrations?: SchemaRegistrations
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

/** One paced publisher at 1,000 events/s, 1 KiB each, one `albergue/#` subscriber. */
const PACED_LOAD: PacedLoad = {
  mode: 'paced',
  ratePerSec: 1000,
  topic: 'albergue/v1/booking/reserved',
  subscription: 'albergue/#',
  payloadBytes: 1024
}

/**
 * 8 QoS 1 publishers of 1 KiB `albergue.v1.booking.reserved` events, 128 without a PUBACK
 * each; one `albergue/#` subscriber at QoS 0. At most 8,192 written and not yet received
 * (about 9 MB, under Redis' 32 MB pub/sub output buffer limit): twice what one saturated
 * node holds in flight (its 1,024 unacked plus socket buffers, 2,000-4,000), so that the
 * bound holds back only a cluster whose routing falls behind, and well under the ~16,000
 * messages past which node B's mqemitter queue costs more per message the longer it gets
 * (README, Cluster).
 */
const WINDOWED_LOAD: WindowedLoad = {
  mode: 'fanin-qos1-windowed',
  publishers: 8,
  window: 128,
  maxUnreceived: 8192,
  topic: 'albergue/v1/booking/reserved',
  subscription: 'albergue/#',
  payloadBytes: 1024,
  uniqueIds: false
}

/**
 * The webhook secret of the benchmark subscription (Standard Webhooks `whsec_` + base64
 * of 32 bytes): every delivery is signed, as a real subscription's would be.
 */
const WEBHOOK_SECRET = `whsec_${Buffer.from('ce-broker benchmark webhook key!').toString('base64')}`

/**
 * The default pipeline (validation, idempotency in memory, audit on `$audit/...`) plus
 * one signed binary-mode webhook subscription on `albergue/#`, to the run's receiver.
 */
function webhookCeBroker (server: ServerContext, queue: { readonly maxQueued?: number, readonly concurrency?: number }): BrokerInput {
  return {
    webhooks: {
      ...(queue.maxQueued === undefined ? {} : { maxQueued: queue.maxQueued }),
      ...(queue.concurrency === undefined ? {} : { defaults: { concurrency: queue.concurrency } }),
      subscriptions: [{ service_id: 'bench', webhook_url: server.receiverUrl(), topic_filters: ['albergue/#'], secret: WEBHOOK_SECRET }]
    }
  }
}

/** The audit file of a pipeline scenario: in the server's temporary directory, removed with it. */
function auditFile (server: ServerContext): string {
  return join(server.tempDir(), 'audit.jsonl')
}

/** The type `schema-register-under-load` registers versions of: the load's events are of it. */
const REGISTERED_TYPE = 'albergue.v1.booking.reserved'

/**
 * The `n`th registration of `schema-register-under-load`: the bundled schema of
 * `REGISTERED_TYPE` with `properties.nights.maximum` raised by `n` (30 → 31, 32, ...).
 * Each version is new and accepts more than the one before (BACKWARD compatible), and
 * the load's events (2 nights) stay valid. The file is read on the first call, in the
 * server process.
 */
function raisingNightsMaximum (): (n: number) => object {
  let bundled: NightsBounded | undefined
  return function nthSchema (n) {
    bundled ??= readBundledSchema(REGISTERED_TYPE)
    const schema = structuredClone(bundled)
    schema.properties.nights.maximum += n
    return schema
  }
}

/** A JSON Schema with a numeric `properties.nights.maximum`, the field `raisingNightsMaximum` raises. */
interface NightsBounded {
  readonly properties: { readonly nights: { maximum: number } }
}

/** The package's own schema of `type` (`schemas/<type>.json`); throws unless it bounds `nights`. */
function readBundledSchema (type: string): NightsBounded {
  const dir = bundledSchemasDir()
  if (dir === undefined) throw new Error('the bundled schemas/ folder was not found beside src/ or dist/')
  const file = join(dir, `${type}.json`)
  const schema: unknown = JSON.parse(readFileSync(file, 'utf8'))
  if (!isNightsBounded(schema)) throw new Error(`${file} has no numeric properties.nights.maximum to raise`)
  return schema
}

function isNightsBounded (schema: unknown): schema is NightsBounded {
  return isObject(schema) && isObject(schema.properties) && isObject(schema.properties.nights) && typeof schema.properties.nights.maximum === 'number'
}

function isObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null
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
    name: 'schema-register-under-load',
    // fanin-qos0-validated's load and config, and a new version of the load's type
    // registered every second through the HTTP API (compatibility check, store write,
    // compile on the event loop, sent to every validation worker); `quiet=` is the same
    // node registering nothing
    ceBroker: function schemaRegisterCeBroker () {
      return { idempotency: { enabled: false }, audit: { enabled: false } }
    },
    registrations: { type: REGISTERED_TYPE, everyMs: 1000, schema: raisingNightsMaximum() },
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
    name: 'fanin-qos0-pipeline-watched',
    // the same with a dashboard watching the audit trail: a client subscribed to
    // $audit/#, so every event is mirrored there too (raw Aedes gets the same client)
    ceBroker: function faninPipelineWatchedCeBroker (server) {
      return { audit: { file: auditFile(server) } }
    },
    load: { ...UNIQUE_FANIN_LOAD, watchers: ['$audit/#'] }
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
  },
  {
    name: 'cluster-cross-node',
    // routing between nodes: the fanin-qos0 config (nothing on the publish path) on two
    // nodes sharing Redis, publishers on A and the subscriber on B, against one embedded node
    ceBroker: function clusterCeBroker () {
      return { validation: { rules: [] }, idempotency: { enabled: false }, audit: { enabled: false } }
    },
    cluster: true,
    load: WINDOWED_LOAD
  },
  {
    name: 'cluster-cross-node-pipeline',
    // the same with the default pipeline (validation, idempotency, audit on $audit/...):
    // on the cluster, idempotency keys (SET NX PX) and the audit stream (XADD) are in Redis
    ceBroker: function clusterPipelineCeBroker () {
      return {}
    },
    cluster: true,
    load: { ...WINDOWED_LOAD, uniqueIds: true }
  },
  {
    name: 'cluster-local',
    // the fanin-qos0 load and config on node A of a two-node cluster, its subscriber
    // on node A too: delivered in process, with nothing through Redis per message
    ceBroker: function clusterLocalCeBroker () {
      return { validation: { rules: [] }, idempotency: { enabled: false }, audit: { enabled: false } }
    },
    cluster: true,
    subscriberOnIngress: true,
    load: FANIN_LOAD
  },
  {
    name: 'webhook-throughput',
    // webhook deliveries/s the receiver gets while the fan-in load streams unique events
    // as fast as the broker takes them
    ceBroker: function webhookThroughputCeBroker (server) {
      // the default webhook settings (issue 21): each subscription's concurrency adapts up to
      // webhooks.defaults.concurrency (128), and a subscription that is behind
      // (webhooks.intake.highWater, 1,000 waiting) holds its publishers back instead of
      // filling the queue to maxQueued and dead-lettering `queue_full`
      return webhookCeBroker(server, {})
    },
    receiver: true,
    load: UNIQUE_FANIN_LOAD
  },
  {
    name: 'webhook-latency-p99',
    // publish → webhook received at a fixed 1,000 events/s, well below saturation: the
    // default queue settings are what a node runs with
    ceBroker: function webhookLatencyCeBroker (server) {
      return webhookCeBroker(server, {})
    },
    receiver: true,
    // the baseline is Aedes getting an event to an MQTT subscriber, not the subscriber's delayed-ACK timer
    aedesNoDelay: true,
    // steady state: ce-broker's first second delivers webhooks 50-180 ms late, the next one up to ~20 ms
    minWarmupMs: 3000,
    load: PACED_LOAD
  },
  {
    name: 'webhook-latency-p99-redis',
    // webhook-latency-p99 with --redis: publish → queued in Redis → taken by a worker → received
    ceBroker: function webhookLatencyRedisCeBroker (server) {
      return { redis: { url: server.redisUrl() }, ...webhookCeBroker(server, {}) }
    },
    receiver: true,
    redis: true,
    aedesNoDelay: true,
    minWarmupMs: 3000,
    load: PACED_LOAD
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
