import type { LookupAddress } from 'node:dns'
import { lookup } from 'node:dns/promises'
import { isIP, type LookupFunction } from 'node:net'
import { buildConnector } from 'undici'
import { DeniedAddressError } from '../../src/core/index.js'
import { DeniedNetworks, type Denial } from './addresses.js'

export { DeniedAddressError } from '../../src/core/index.js'

/** Every address of a host name, as `dns.lookup(host, { all: true })` answers. */
export type Resolver = (hostname: string) => Promise<readonly LookupAddress[]>

export interface UrlPolicyOptions {
  /** How host names are resolved, at registration and for every connection. Default `node:dns` `lookup` (the system resolver). */
  readonly resolve?: Resolver
}

/**
 * The refusal of a connection to `address` (what `host` resolved to, or `host` itself),
 * in a denied network: a delivery meeting it fails for good, it is not retried.
 */
function deniedAddress (host: string, address: string, denial: Denial): DeniedAddressError {
  const where = `in a denied network (${named(denial)})`
  return new DeniedAddressError(host, address, denial.network, host === address
    ? `webhook address ${shown(address, denial)} is ${where}: not connected`
    : `webhook host ${host} resolved to ${shown(address, denial)}, which is ${where}: not connected`)
}

async function systemResolve (hostname: string): Promise<readonly LookupAddress[]> {
  return await lookup(hostname, { all: true })
}

/**
 * Where webhooks may go: http(s) only, no credentials, no address in a denied network
 * (`webhooks.denyNetworks`, whose default lists the link-local and cloud metadata ones).
 * Checked twice: `problem` when a URL is registered, and `connector` for every
 * connection a delivery opens, on the addresses then resolved (the answer may have
 * changed since: DNS rebinding).
 */
export class UrlPolicy {
  readonly #denied: DeniedNetworks
  readonly #resolve: Resolver

  constructor (readonly networks: readonly string[], options: UrlPolicyOptions = {}) {
    this.#denied = new DeniedNetworks(networks)
    this.#resolve = options.resolve ?? systemResolve
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
    // WHATWG URL has already normalized IPv4 written in hex, octal or as one number, and IPv6
    const host = url.hostname.replace(/^\[|\]$/g, '')
    let addresses: readonly LookupAddress[]
    try {
      addresses = isIP(host) === 0 ? await this.#resolve(host) : [{ address: host, family: isIP(host) }]
    } catch (err: unknown) {
      return `webhook_url host ${JSON.stringify(host)} does not resolve: ${err instanceof Error ? err.message : String(err)}`
    }
    for (const { address } of addresses) {
      const denial = this.#denied.match(address)
      if (denial !== undefined) return `webhook_url address ${shown(address, denial)} is in a denied network (${named(denial)})`
    }
    return undefined
  }

  /**
   * An undici connector (`new Agent({ connect })`) that opens a connection only to an
   * allowed address: an address literal is checked as it is (net connects to it
   * without a lookup), a host name is resolved through `lookup`. A refusal reaches
   * the request as a `DeniedAddressError`.
   */
  connector (): buildConnector.connector {
    const connect = buildConnector({ lookup: this.lookup })
    const connectAllowed: buildConnector.connector = (target, callback) => {
      // undici gives an IPv6 literal without its brackets
      const denial = this.#denied.match(target.hostname)
      if (denial === undefined) connect(target, callback)
      else callback(deniedAddress(target.hostname, target.hostname, denial), null)
    }
    return connectAllowed
  }

  /**
   * A `net.connect` lookup: resolves with the policy's resolver and fails with a
   * `DeniedAddressError` when any address is denied (as registration does), so
   * neither the address chosen nor a happy-eyeballs fallback reaches a denied network.
   */
  readonly lookup: LookupFunction = (hostname, options, callback) => {
    this.#resolve(hostname).then((addresses) => {
      for (const { address } of addresses) {
        const denial = this.#denied.match(address)
        if (denial !== undefined) return callback(deniedAddress(hostname, address, denial), [])
      }
      const family = options.family === 'IPv4' ? 4 : options.family === 'IPv6' ? 6 : options.family ?? 0
      const usable = family === 0 ? addresses : addresses.filter((a) => a.family === family)
      const first = usable[0]
      if (first === undefined) return callback(Object.assign(new Error(`webhook host ${hostname} has no IPv${family === 0 ? '4 or IPv6' : family} address`), { code: 'ENOTFOUND' }), [])
      // net asks for every address when it may try them in turn (autoSelectFamily, on by default since Node 20)
      if (options.all === true) callback(null, [...usable])
      else callback(null, first.address, first.family)
    }, (err: unknown) => {
      callback(err instanceof Error ? err : new Error(String(err)), [])
    })
  }
}

/** The denied network, with why when it is always denied: `0.0.0.0/8, always denied: it reaches the local host`. */
function named (denial: Denial): string {
  return denial.reason === undefined ? denial.network : `${denial.network}, ${denial.reason}`
}

/** The address, with the IPv4 address an IPv6 one carries: `::a9fe:a9fe (IPv4 169.254.169.254)`. */
function shown (address: string, denial: Denial): string {
  return denial.ipv4 === undefined ? address : `${address} (IPv4 ${denial.ipv4})`
}
