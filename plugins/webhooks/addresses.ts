import { BlockList, isIP } from 'node:net'

/** Where an address was found to be denied: the configured network, and the IPv4 address it was matched as. */
export interface Denial {
  /** The entry of `webhooks.denyNetworks` that holds it, as configured. */
  readonly network: string
  /** Set when an IPv6 address was denied for the IPv4 address it carries (`::a9fe:a9fe` → 169.254.169.254). */
  readonly ipv4?: string
}

/**
 * The networks of `webhooks.denyNetworks`, one `BlockList` each so that a match can
 * name its network. An IPv6 address is also checked as the IPv4 address it carries
 * in the forms that reach that IPv4 host: IPv4-mapped `::ffff:a.b.c.d` (BlockList
 * matches these by itself), IPv4-compatible `::a.b.c.d` (RFC 4291, deprecated, still
 * routed by some stacks) and the NAT64 well-known prefix `64:ff9b::/96` (RFC 6052).
 */
export class DeniedNetworks {
  readonly #rules: ReadonlyArray<{ readonly network: string, readonly list: BlockList }>

  /** @param networks CIDR networks or single addresses, as the config schema accepts them */
  constructor (networks: readonly string[]) {
    this.#rules = networks.map((network) => {
      const [address = '', bits] = network.split('/')
      const family = isIP(address) === 6 ? 'ipv6' : 'ipv4'
      const list = new BlockList()
      if (bits === undefined) list.addAddress(address, family)
      else list.addSubnet(address, Number(bits), family)
      return { network, list }
    })
  }

  /** The denied network holding `address` (an IP address), or `undefined` when none does. */
  match (address: string): Denial | undefined {
    const family = isIP(address)
    if (family === 0) return undefined
    const ipv4 = family === 6 ? embeddedIPv4(address) : undefined
    const network = this.#find(address, family === 6 ? 'ipv6' : 'ipv4') ?? (ipv4 === undefined ? undefined : this.#find(ipv4, 'ipv4'))
    if (network === undefined) return undefined
    return ipv4 === undefined ? { network } : { network, ipv4 }
  }

  #find (address: string, family: 'ipv4' | 'ipv6'): string | undefined {
    return this.#rules.find((rule) => rule.list.check(address, family))?.network
  }
}

/**
 * The IPv4 address an IPv6 address carries as IPv4-mapped (`::ffff:0:0/96`),
 * IPv4-compatible (`::/96`, but not `::` or `::1`, which are IPv6's own) or NAT64
 * (`64:ff9b::/96`); `undefined` for any other address.
 */
export function embeddedIPv4 (address: string): string | undefined {
  const groups = ipv6Groups(address)
  if (groups === undefined) return undefined
  const [a = 0, b = 0, c = 0, d = 0, e = 0, f = 0, high = 0, low = 0] = groups
  const zeros = a === 0 && b === 0 && c === 0 && d === 0 && e === 0
  const mapped = zeros && f === 0xffff
  const compatible = zeros && f === 0 && (high !== 0 || low > 1)
  const nat64 = a === 0x64 && b === 0xff9b && c === 0 && d === 0 && e === 0 && f === 0
  if (!mapped && !compatible && !nat64) return undefined
  return `${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`
}

/** The eight 16-bit groups of an IPv6 address (zone id and a dotted IPv4 tail allowed), or `undefined` if it is not one. */
function ipv6Groups (address: string): number[] | undefined {
  if (isIP(address) !== 6) return undefined
  let text = address.split('%')[0] ?? ''
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text)
  if (dotted !== null) {
    const [, p = '0', q = '0', r = '0', s = '0'] = dotted
    text = `${text.slice(0, dotted.index)}${((Number(p) << 8) | Number(q)).toString(16)}:${((Number(r) << 8) | Number(s)).toString(16)}`
  }
  const [head = '', tail] = text.split('::')
  const parse = (part: string): number[] => part === '' ? [] : part.split(':').map((group) => parseInt(group, 16))
  const front = parse(head)
  const back = tail === undefined ? [] : parse(tail)
  return [...front, ...new Array<number>(8 - front.length - back.length).fill(0), ...back]
}
