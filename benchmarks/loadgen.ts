/**
 * Load generator child of `run.js`:
 * `node loadgen.js <scenario> <publisherPort> <subscriberPort> <warmupMs> <windowMs>`.
 * Publishers connect to `publisherPort`, subscribers to `subscriberPort`: the same
 * port for one broker, node A's and node B's for a cluster.
 *
 * Runs in its own process (its own core on a 2-core machine) and does as little
 * per message as it can, so the broker is what saturates: packets are encoded
 * once, publishers write one Buffer of many concatenated PUBLISH packets per
 * `write()` (with unique ids, only the id's counter digits are rewritten in it
 * between writes), and the subscriber counts PUBLISH packets by their fixed headers
 * (and a QoS 1 publisher its PUBACKs).
 * The paced load instead sends one stamped event at a time at a fixed rate, and its
 * subscriber reads each event's send stamp to take its latency.
 * Everything is bounded by time; the process exits by itself when done.
 */
import { faninQos0 } from './fanin-load.js'
import { Run, send, type Ports } from './load-session.js'
import { paced } from './paced-load.js'
import type { LoadResult } from './protocol.js'
import { findScenario, type LoadSpec } from './scenarios.js'
import { faninQos1Windowed } from './windowed-load.js'

/** Slack over twice warm-up + window (the load, then at most as long again draining) before the whole run is abandoned, in ms. */
const OVERRUN_SLACK_MS = 15_000

async function runLoad (run: Run, ports: Ports, load: LoadSpec, warmupMs: number, windowMs: number): Promise<LoadResult> {
  switch (load.mode) {
    case 'fanin-qos0': return await faninQos0(run, ports, load, warmupMs, windowMs)
    case 'paced': return await paced(run, ports, load, warmupMs, windowMs)
    case 'fanin-qos1-windowed': return await faninQos1Windowed(run, ports, load, warmupMs, windowMs)
  }
}

function integerArg (name: string, value: string | undefined, min: number): number {
  const n = Number(value)
  if (value === undefined || !Number.isInteger(n) || n < min) throw new Error(`loadgen.js: ${name} must be an integer >= ${min}, got ${JSON.stringify(value)}`)
  return n
}

async function main (): Promise<void> {
  const [scenarioName, publisherPortArg, subscriberPortArg, warmupArg, windowArg] = process.argv.slice(2)
  const scenario = findScenario(scenarioName)
  const ports: Ports = { publishers: integerArg('publisherPort', publisherPortArg, 1), subscriber: integerArg('subscriberPort', subscriberPortArg, 1) }
  const warmupMs = integerArg('warmupMs', warmupArg, 0)
  const windowMs = integerArg('windowMs', windowArg, 1)

  const run = new Run(2 * (warmupMs + windowMs) + OVERRUN_SLACK_MS)
  try {
    const result = await runLoad(run, ports, scenario.load, warmupMs, windowMs)
    run.stop()
    await send({ type: 'result', result })
  } catch (err: unknown) {
    throw run.error ?? err
  } finally {
    run.stop()
  }
}

main().then(
  function done () {
    if (process.connected) process.disconnect()
  },
  function failed (err: unknown) {
    process.stderr.write(`loadgen.js: ${err instanceof Error ? err.message : String(err)}\n`)
    process.exitCode = 1
    if (process.connected) process.disconnect()
  })
