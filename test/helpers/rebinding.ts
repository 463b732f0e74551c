import type { TestContext } from 'node:test'
import { WEBHOOKS, builtinPlugins, definePlugin, type Broker, type Resolver, type WebhookRegistry, type WebhookSubscriptionInput } from '../../src/index.js'
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
 * A broker whose webhooks resolve through `resolve` (the built-in plugins with that
 * override): `denyNetworks`, the given subscriptions, and a retry policy under which a
 * refusal taken for a network error would be tried 3 times. `registry` is the webhooks
 * plugin's, as a plugin loaded after it finds it.
 */
export async function startBrokerResolving (t: TestContext, options: { readonly denyNetworks: readonly string[], readonly resolve: Resolver, readonly subscriptions: readonly WebhookSubscriptionInput[] }): Promise<{ readonly broker: Broker, readonly registry: WebhookRegistry }> {
  let registry: WebhookRegistry | undefined
  const probe = definePlugin({ name: 'webhooks-probe', dependsOn: ['webhooks'], setup: async (ctx) => { registry = ctx.need(WEBHOOKS) } })
  const broker = await startBroker(t, {
    preset: builtinPlugins({ resolve: options.resolve }),
    plugins: [probe()],
    webhooks: {
      denyNetworks: options.denyNetworks,
      subscriptions: options.subscriptions,
      defaults: { retry: { maxAttempts: 3, initialDelayMs: 5, maxDelayMs: 20 }, timeoutMs: 5_000, concurrency: 2 },
      maxQueued: 100,
      breaker: { failures: 5, halfOpenAfterMs: 60_000 }
    }
  })
  if (registry === undefined) throw new Error('the webhooks plugin provided no registry')
  return { broker, registry }
}
