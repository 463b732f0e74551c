import { lookup } from 'node:dns/promises'
import { BlockList, isIP } from 'node:net'

/**
 * Checks webhook URLs: http(s) only, no credentials, no address in a denied network
 * (`webhooks.denyNetworks`, whose default lists the link-local and cloud metadata ones).
 */
export class UrlPolicy {
  readonly #denied = new BlockList()

  constructor (readonly networks: readonly string[]) {
    for (const network of networks) {
      const [address = '', bits] = network.split('/')
      const family = isIP(address) === 6 ? 'ipv6' : 'ipv4'
      if (bits === undefined) this.#denied.addAddress(address, family)
      else this.#denied.addSubnet(address, Number(bits), family)
    }
  }

  /**
   * Why `raw` may not be a webhook URL, or `undefined` when it may. A host name is
   * resolved, and refused when any of its addresses is in a denied network.
   */
  async problem (raw: string): Promise<string | undefined> {
    let url: URL
    try {
      url = new URL(raw)
    } catch {
      return `webhook_url ${JSON.stringify(raw)} is not a URL`
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return `webhook_url must be http or https, got ${JSON.stringify(url.protocol.slice(0, -1))}`
    if (url.username !== '' || url.password !== '') return 'webhook_url must not carry credentials: use a secret'
    const host = url.hostname.replace(/^\[|\]$/g, '')
    let addresses: Array<{ address: string, family: number }>
    try {
      addresses = isIP(host) === 0 ? await lookup(host, { all: true }) : [{ address: host, family: isIP(host) }]
    } catch (err: unknown) {
      return `webhook_url host ${JSON.stringify(host)} does not resolve: ${err instanceof Error ? err.message : String(err)}`
    }
    for (const { address, family } of addresses) {
      if (this.#denied.check(address, family === 6 ? 'ipv6' : 'ipv4')) return `webhook_url address ${address} is in a denied network (${this.networks.join(', ')})`
    }
    return undefined
  }
}
