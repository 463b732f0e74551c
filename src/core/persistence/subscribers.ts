import type { Aedes } from 'aedes'
import type { MqttSubscriber } from '../context.js'
import { isReserved } from '../reserved-topics.js'
import { compileFilter } from '../topics.js'
import type { Backend } from './index.js'

/**
 * MQTT subscriptions whose filter matches `topic`: the online clients of this node (any
 * QoS), and from the persistence the QoS 1/2 subscriptions of every session, offline
 * ones and, with Redis, other nodes' included. QoS 0 subscribers on other nodes are not
 * known here.
 */
export async function mqttSubscribers (aedes: Aedes, backend: Backend, topic: string): Promise<MqttSubscriber[]> {
  const found = new Map<string, MqttSubscriber>()
  const add = (sub: MqttSubscriber): void => { found.set(`${sub.clientId}\u0000${sub.filter}`, sub) }
  // aedes keeps its connected clients and their subscriptions on fields its types leave out
  const clients: unknown = Reflect.get(aedes, 'clients')
  if (typeof clients === 'object' && clients !== null) {
    for (const client of Object.values(clients)) {
      const id: unknown = Reflect.get(Object(client), 'id')
      const subscriptions: unknown = Reflect.get(Object(client), 'subscriptions')
      if (typeof id !== 'string' || typeof subscriptions !== 'object' || subscriptions === null) continue
      for (const [filter, sub] of Object.entries(subscriptions)) {
        if (isReserved(filter) || !compileFilter(filter)(topic)) continue
        const qos: unknown = Reflect.get(Object(sub), 'qos')
        add({ clientId: id, filter, qos: typeof qos === 'number' ? qos : 0 })
      }
    }
  }
  const stored = await backend.subscribers(topic)
  for (const sub of stored) add({ clientId: sub.clientId, filter: sub.topic, qos: sub.qos })
  return [...found.values()]
}
