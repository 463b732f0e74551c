import { BlockList, isIP } from 'node:net'

/** Where an address was found to be denied: the configured network, and the IPv4 address it was matched as. */
export interface Denial {
  /** The entry of `webhooks.denyNetworks` that holds it, as configured, or one of `ALWAYS_DENIED`. */
  readonly network: string
  /** Why a network of `ALWAYS_DENIED` is denied; absent for a configured one. */
  readonly reason?: string
  /** Set when an IPv6 address was denied for the IPv4 address it carries (`::a9fe:a9fe` → 169.254.169.254). */
  readonly ipv4?: string
}

/**
 * Denied whatever `webhooks.denyNetworks` says. Connecting to the unspecified address
 * (`0.0.0.0`, `::`) reaches the local host on Linux, so without these a deny list holding
 * `127.0.0.0/8` and `::1/128` would still let a webhook reach a service listening on
 * every address of the broker's host; the rest of `0.0.0.0/8` is "this network"
 * (RFC 1122), never a destination.
 */
export const ALWAYS_DENIED: ReadonlyArray<{ readonly network: string, readonly reason: string }> = [
  { network: '0.0.0.0/8', reason: 'always denied: it reaches the local host' },
  { network: '::/128', reason: 'always denied: it reaches the local host' }
]

/**
 * The networks of `webhooks.denyNetworks`, then `ALWAYS_DENIED`, one `BlockList` each so
 * that a match can name its network. An IPv6 address is also checked as the IPv4
 * address it carries in the forms that reach that IPv4 host: IPv4-mapped
 * `::ffff:a.b.c.d` (BlockList matches these by itself), IPv4-compatible `::a.b.c.d`
 * (RFC 4291, deprecated, still routed by some stacks) and NAT64: the well-known prefix
 * `64:ff9b::/96` (RFC 6052) and a /96 of the local-use prefix `64:ff9b:1::/48` (RFC 8215).
 */
export class DeniedNetworks {
  readonly #rules: ReadonlyArray<{ readonly denial: Denial, readonly list: BlockList }>

  /** @param networks CIDR networks or single addresses, as the config schema accepts them */
  constructor (networks: readonly string[]) {
    this.#rules = [...networks.map((network) => ({ network })), ...ALWAYS_DENIED].map((denial) => {
      const [address = '', bits] = denial.network.split('/')
      const family = isIP(address) === 6 ? 'ipv6' : 'ipv4'
      const list = new BlockList()
      if (bits === undefined) list.addAddress(address, family)
      else list.addSubnet(address, Number(bits), family)
      return { denial, list }
    })
  }

  /** The denied network holding `address` (an IP address), or `undefined` when none does. */
  match (address: string): Denial | undefined {
    const family = isIP(address)
    if (family === 0) return undefined
    const ipv4 = family === 6 ? embeddedIPv4(address) : undefined
    const denial = this.#find(address, family === 6 ? 'ipv6' : 'ipv4') ?? (ipv4 === undefined ? undefined : this.#find(ipv4, 'ipv4'))
    if (denial === undefined) return undefined
    return ipv4 === undefined ? denial : { ...denial, ipv4 }
  }

  #find (address: string, family: 'ipv4' | 'ipv6'): Denial | undefined {
    return this.#rules.find((rule) => rule.list.check(address, family))?.denial
  }
}

/**
 * The IPv4 address an IPv6 address carries as IPv4-mapped (`::ffff:0:0/96`),
 * IPv4-compatible (`::/96`, but not `::` or `::1`, which are IPv6's own) or NAT64
 * (`64:ff9b::/96`, and `64:ff9b:1::/48` read as a /96 under it); `undefined` for any
 * other address. The local-use prefix may also be used at /48, /56 or /64 (RFC 6052
 * §2.2), which put the IPv4 address around bits 64-71; the address does not say which,
 * so those forms are read as a /96 all the same: /48 and /56 ones read as 0.0.0.0 and are
 * refused (fail closed), /64 ones as another address.
 */
export function embeddedIPv4 (address: string): string | undefined {
  const groups = ipv6Groups(address)
  if (groups === undefined) return undefined
  const [a = 0, b = 0, c = 0, d = 0, e = 0, f = 0, high = 0, low = 0] = groups
  const zeros = a === 0 && b === 0 && c === 0 && d === 0 && e === 0
  const mapped = zeros && f === 0xffff
  const compatible = zeros && f === 0 && (high !== 0 || low > 1)
  const nat64 = a === 0x64 && b === 0xff9b && ((c === 0 && d === 0 && e === 0 && f === 0) || c === 1)
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
