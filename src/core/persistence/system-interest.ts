import type { MQEmitter } from 'mqemitter'
import { systemLevel } from '../reserved-topics.js'

/** Whether anybody on this node listens under a `$` top level (`$audit`, `$DLQ`). */
export type SystemInterest = (level: string) => boolean

/**
 * Track which `$` top levels have listeners on `mq`, so that a plugin mirroring
 * every event to a `$` topic (the audit trail) can skip building messages that no
 * subscriber would get. Only filters whose first level starts with `$` are kept: a
 * filter starting with `+` or `#` never matches a `$` topic [MQTT-4.7.2-1], so the
 * rest cannot make a `$` level interesting.
 *
 * Wraps the emitter's public `on` and `removeListener`, through which aedes adds and
 * removes every subscription (clients', restored sessions', its own `$SYS` ones).
 * Listeners are kept by filter and function, so a removal of something never added
 * changes nothing.
 */
export function watchSystemTopics (mq: MQEmitter): SystemInterest {
  /** level → filter → the functions listening on it */
  const levels = new Map<string, Map<string, Set<unknown>>>()
  const on = mq.on.bind(mq)
  const removeListener = mq.removeListener.bind(mq)

  mq.on = function onTracked (topic, notify, done) {
    const level = systemLevel(topic)
    if (level !== undefined) {
      let filters = levels.get(level)
      if (filters === undefined) levels.set(level, filters = new Map())
      let listeners = filters.get(topic)
      if (listeners === undefined) filters.set(topic, listeners = new Set())
      listeners.add(notify)
    }
    return on(topic, notify, done)
  }
  mq.removeListener = function removeListenerTracked (topic, notify, done) {
    const level = systemLevel(topic)
    const filters = level === undefined ? undefined : levels.get(level)
    const listeners = filters?.get(topic)
    if (filters !== undefined && listeners !== undefined && level !== undefined) {
      listeners.delete(notify)
      if (listeners.size === 0) filters.delete(topic)
      if (filters.size === 0) levels.delete(level)
    }
    return removeListener(topic, notify, done)
  }
  return (level) => levels.has(level)
}
