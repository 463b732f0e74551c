/**
 * Micro-benchmark of the publish checks alone, in this process: µs per 1 KiB
 * `albergue.v1.booking.reserved` event for JSON.parse alone (the floor any
 * check needs) and for the whole check the schema-validation plugin runs
 * (JSON.parse, CloudEvents envelope, type ⇄ topic, schema of `data`).
 */
import { fileURLToPath } from 'node:url'
import { SchemaRegistry, createEventCheck } from '../plugins/schema-validation/index.js'
import { bookingReservedEvent } from './payload.js'

export interface ValidationFigures {
  /** µs per event, JSON.parse of the payload only. */
  readonly parseUs: number
  /** µs per event, the plugin's whole check. */
  readonly checkUs: number
}

const TOPIC = 'albergue/v1/booking/reserved'

/**
 * Best of `rounds` alternating timings of `iterations` events each. The best, not the
 * median: on a shared machine noise only ever adds time, and what is timed here is a
 * pure function of one fixed input.
 */
export async function measureValidation (rounds: number, iterations = 200_000): Promise<ValidationFigures> {
  const registry = await SchemaRegistry.load(fileURLToPath(new URL('../../schemas/', import.meta.url)))
  const check = createEventCheck({ registry, default: 'pass', rules: [{ match: 'albergue/#', cloudevents: true, schema: 'required', onInvalid: 'dlq' }] })
  const payload = bookingReservedEvent(1024)
  if (!check(TOPIC, payload)) throw new Error('the benchmark event is not validated: check the rule')

  let sink = 0
  const parseOnly = (): void => { sink += JSON.parse(payload.toString('utf8')) === null ? 0 : 1 }
  const fullCheck = (): void => { sink += check(TOPIC, payload) ? 1 : 0 }
  const time = (fn: () => void): number => {
    const start = process.hrtime.bigint()
    for (let i = 0; i < iterations; i++) fn()
    return Number(process.hrtime.bigint() - start) / 1000 / iterations
  }
  // warm both paths up so the JIT has optimised them before anything is timed
  time(parseOnly)
  time(fullCheck)
  const parse: number[] = []
  const full: number[] = []
  for (let round = 0; round < rounds; round++) {
    if (round % 2 === 0) {
      parse.push(time(parseOnly))
      full.push(time(fullCheck))
    } else {
      full.push(time(fullCheck))
      parse.push(time(parseOnly))
    }
  }
  if (sink === 0) throw new Error('nothing was checked')
  return { parseUs: Math.min(...parse), checkUs: Math.min(...full) }
}
