import { defer } from './cleanup.js'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { createBroker, type Broker, type BrokerInput } from '../../src/index.js'

/** Log level of brokers started by tests; `TEST_LOG_LEVEL=debug npm test` to see their logs. */
const LOG_LEVEL = process.env.TEST_LOG_LEVEL === 'debug' ? 'debug' : 'silent'

/** A folder of its own for a broker's schema registry (`schemas.dataDir`), removed after the test. */
export async function dataDirFor (t: TestContext): Promise<string> {
  const dataDir = await mkdtemp(join(tmpdir(), 'ce-broker-data-'))
  defer(t, () => rm(dataDir, { recursive: true, force: true }))
  return dataDir
}

/**
 * A broker on 127.0.0.1 with every port chosen by the OS, closed after the test. Its
 * schema registry keeps its versions in a folder of its own (`schemas.dataDir`), removed
 * after the test, unless the test names one.
 */
export async function startBroker (t: TestContext, input: BrokerInput = {}): Promise<Broker> {
  const dataDir = input.schemas?.dataDir ?? await dataDirFor(t)
  const broker = await createBroker({
    logLevel: LOG_LEVEL,
    ...input,
    schemas: { ...input.schemas, dataDir },
    mqtt: { port: 0, ...input.mqtt },
    http: { port: 0, ...input.http }
  })
  defer(t, () => broker.close())
  return broker
}

export function mqttUrl (broker: Broker): string {
  return `mqtt://127.0.0.1:${broker.ports.mqtt}`
}

export function httpUrl (broker: Broker, path = ''): string {
  return `http://127.0.0.1:${broker.ports.http}${path}`
}

/** A connected `mqtt` client that never reconnects by itself, ended after the test. */
export async function connect (t: TestContext, url: string, options: IClientOptions = {}): Promise<MqttClient> {
  const client = await mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5_000, ...options })
  defer(t, () => client.endAsync(true))
  return client
}

/** A message as a test sees it. */
export interface Received {
  readonly topic: string
  readonly payload: Buffer
  readonly qos: number
  readonly retain: boolean
}

/** The next message `client` receives (on `topic`, when given), or a rejection after `timeoutMs`. */
export async function nextMessage (client: MqttClient, topic?: string, timeoutMs = 5_000): Promise<Received> {
  return await new Promise<Received>((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off('message', onMessage)
      reject(new Error(`no message${topic === undefined ? '' : ` on ${topic}`} within ${timeoutMs} ms`))
    }, timeoutMs)
    function onMessage (received: string, payload: Buffer, packet: { qos: number, retain: boolean }): void {
      if (topic !== undefined && received !== topic) return
      clearTimeout(timer)
      client.off('message', onMessage)
      resolve({ topic: received, payload, qos: packet.qos, retain: packet.retain })
    }
    client.on('message', onMessage)
  })
}

/** Collect `count` messages in arrival order, or reject after `timeoutMs`. */
export async function collectMessages (client: MqttClient, count: number, timeoutMs = 5_000): Promise<Received[]> {
  const out: Received[] = []
  return await new Promise<Received[]>((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off('message', onMessage)
      reject(new Error(`got ${out.length} of ${count} messages within ${timeoutMs} ms`))
    }, timeoutMs)
    function onMessage (topic: string, payload: Buffer, packet: { qos: number, retain: boolean }): void {
      out.push({ topic, payload, qos: packet.qos, retain: packet.retain })
      if (out.length < count) return
      clearTimeout(timer)
      client.off('message', onMessage)
      resolve(out)
    }
    client.on('message', onMessage)
  })
}

/** Resolve when `client` closes, or reject after `timeoutMs`. */
export async function closed (client: MqttClient, timeoutMs = 5_000): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`client still open after ${timeoutMs} ms`)) }, timeoutMs)
    client.once('close', () => {
      clearTimeout(timer)
      resolve()
    })
  })
}

/** The value of one Prometheus sample, e.g. `sample(text, 'ce_broker_connected_clients', { transport: 'tcp' })`. */
export function sample (metricsText: string, name: string, labels: Readonly<Record<string, string>> = {}): number | undefined {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`)
  for (const line of metricsText.split('\n')) {
    if (!line.startsWith(name)) continue
    const match = /^([a-z_:]+)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (match === null || match[1] !== name) continue
    const present = (match[2] ?? '').split(',')
    if (wanted.every((pair) => present.includes(pair))) return Number(match[3])
  }
  return undefined
}

/**
 * SUBSCRIBE and return the granted QoS per filter, 128 for a refused one.
 * (`subscribeAsync` rejects as soon as any filter is refused.)
 */
export async function subscribeGranted (client: MqttClient, filters: string[], qos: 0 | 1 | 2 = 1): Promise<number[]> {
  try {
    return (await client.subscribeAsync(filters, { qos })).map((g) => g.qos)
  } catch (err: unknown) {
    const granted: unknown = typeof err === 'object' && err !== null && 'packet' in err && typeof err.packet === 'object' && err.packet !== null && 'granted' in err.packet ? err.packet.granted : undefined
    if (Array.isArray(granted)) return granted.map(Number)
    throw err
  }
}

/** The socket (or WebSocket stream) the broker holds for `clientId`, if it is connected: aedes keeps its clients by id, a field its types leave out. */
export function connectionOf (broker: Broker, clientId: string): object | undefined {
  const clients: unknown = Reflect.get(broker.aedes, 'clients')
  const client: unknown = typeof clients === 'object' && clients !== null ? Reflect.get(clients, clientId) : undefined
  if (typeof client !== 'object' || client === null || Reflect.get(client, 'closed') !== false) return undefined
  const conn: unknown = Reflect.get(client, 'conn')
  return typeof conn === 'object' && conn !== null ? conn : undefined
}

/** Whether the broker still holds a live connection of `clientId` (a paused socket cannot see its own end). */
export function connectedOnBroker (broker: Broker, clientId: string): boolean {
  const conn = connectionOf(broker, clientId)
  return conn !== undefined && Reflect.get(conn, 'destroyed') === false
}
