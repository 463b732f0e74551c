import type { Logger } from './logger.js'
import { STATS_PREFIX } from './reserved-topics.js'

/** Where each node publishes its stats for dashboards: `$SYS/ce-broker/<nodeId>/stats`. */
export function statsTopic (nodeId: string): string {
  return `${STATS_PREFIX}${nodeId}/stats`
}

/** How often a node publishes its stats. */
export const STATS_INTERVAL_MS = 2_000

/** What a node publishes every `STATS_INTERVAL_MS` (QoS 0, not retained). */
export interface NodeStats {
  readonly node: string
  /** RFC 3339 */
  readonly at: string
  readonly intervalMs: number
  /** MQTT clients connected to this node. */
  readonly clients: number
  /** Events on validated topics counted by this node since it started, by outcome. */
  readonly events: { readonly accepted: number, readonly rejected: number, readonly duplicate: number }
  /** What plugins add (`ctx.stats`): the webhooks plugin, `webhooks`, its subscriptions with their state as this node sees them. */
  readonly [contributed: string]: unknown
}

/**
 * Publish this node's stats on a timer. A dashboard charts rates from the differences
 * between two messages of a node, and adds up the nodes of a cluster.
 */
export function publishStats (options: {
  readonly nodeId: string
  readonly collect: () => Pick<NodeStats, 'clients' | 'events'> & Readonly<Record<string, unknown>>
  readonly publish: (topic: string, payload: string) => Promise<void>
  readonly log: Logger
  readonly intervalMs?: number
}): { stop: () => void } {
  const { nodeId, collect, publish, log, intervalMs = STATS_INTERVAL_MS } = options
  const topic = statsTopic(nodeId)
  let failing = false
  const timer = setInterval(function publishNodeStats () {
    const stats: NodeStats = { ...collect(), node: nodeId, at: new Date().toISOString(), intervalMs }
    publish(topic, JSON.stringify(stats)).then(() => { failing = false }, (err: unknown) => {
      // once per run of failures (Redis away): the next success says nothing, the next failure logs again
      if (!failing) log.debug({ err }, 'stats not published')
      failing = true
    })
  }, intervalMs)
  timer.unref()
  return { stop: () => { clearInterval(timer) } }
}
