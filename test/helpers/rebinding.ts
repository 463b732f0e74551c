import type { TestContext } from 'node:test'
import { Registry } from 'prom-client'
import { MemoryDeadLetterStore, type Broker, type PluginEntry, type WebhookSubscriptionInput } from '../../src/index.js'
import { WebhookRegistry, webhooks, type Resolver } from '../../plugins/webhooks/index.js'
import { startBroker } from './broker.js'

/**
 * A resolver for `rebind.test` that answers `first` once (registration) and `then` ever
 * after (delivery), as a DNS-rebinding name does; `asked` lists the names it was asked for.
 */
export function rebindingResolver (first: string, then: string): { readonly resolve: Resolver, readonly asked: string[] } {
  const asked: string[] = []
  const resolve: Resolver = async (hostname) => {
    if (hostname !== 'rebind.test') throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' })
    asked.push(hostname)
    return [{ address: asked.length === 1 ? first : then, family: 4 }]
  }
  return { resolve, asked }
}

/**
 * A broker with a second webhooks plugin that resolves through `resolve` (the broker's own
 * resolves through the system): its own name and metrics registry, `denyNetworks`, the
 * given subscriptions, and a retry policy under which a refusal taken for a network
 * error would be tried 3 times.
 */
export async function startBrokerResolving (t: TestContext, options: { readonly denyNetworks: readonly string[], readonly resolve: Resolver, readonly subscriptions: readonly WebhookSubscriptionInput[] }): Promise<{ readonly broker: Broker, readonly registry: WebhookRegistry }> {
  const registry = new WebhookRegistry(options.denyNetworks, { resolve: options.resolve })
  const entry = webhooks({
    registry,
    deadLetters: new MemoryDeadLetterStore(10),
    subscriptions: options.subscriptions,
    retry: { maxAttempts: 3, initialDelayMs: 5, maxDelayMs: 20 },
    timeoutMs: 5_000,
    concurrency: 2,
    maxQueued: 100,
    breaker: { failures: 5, halfOpenAfterMs: 60_000 }
  })
  const withResolver: PluginEntry = { ...entry, name: 'webhooks-rebinding', start: async (ctx) => await entry.start({ ...ctx, metrics: new Registry() }) }
  return { broker: await startBroker(t, { plugins: [withResolver] }), registry }
}
