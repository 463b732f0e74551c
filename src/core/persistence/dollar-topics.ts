import type { AedesMemoryPersistence } from 'aedes-persistence'
import { DISCARD_PREFIX } from '../reserved-topics.js'

/**
 * Keep `$` topics out of the sessions they do not belong in. [MQTT-4.7.2-1]: a filter
 * that starts with a wildcard does not match a topic that starts with `$`. aedes keeps
 * to it when it sends to an online client, but when it queues QoS 1/2 copies in the
 * persistent sessions (`subscriptionsByTopic`) only for `$SYS/`: a `#` subscriber's
 * session would fill with `$DLQ/…` and `$audit/…` copies, acked by no one. A
 * `$DISCARD/…` packet (a refused publish, or an accepted one the commit has routed
 * already) goes into no session at all.
 *
 * aedes 1 calls the persistence's promise form; the persistence's types declare the
 * callback form, hence the reflection.
 */
export function guardDollarTopics (persistence: AedesMemoryPersistence): void {
  const original: unknown = Reflect.get(persistence, 'subscriptionsByTopic')
  if (typeof original !== 'function') throw new TypeError('the persistence has no subscriptionsByTopic(): review dollar-topics.ts')
  Reflect.set(persistence, 'subscriptionsByTopic', async function subscriptionsByTopic (topic: string): Promise<unknown> {
    if (topic.startsWith(DISCARD_PREFIX)) return []
    const subs: unknown = await Reflect.apply(original, persistence, [topic])
    if (topic.charCodeAt(0) !== DOLLAR || !Array.isArray(subs)) return subs
    return subs.filter((sub: unknown) => {
      const filter: unknown = Reflect.get(Object(sub), 'topic')
      return typeof filter !== 'string' || (filter.charCodeAt(0) !== PLUS && filter.charCodeAt(0) !== SHARP)
    })
  })
}

const DOLLAR = 36
const PLUS = 43
const SHARP = 35
