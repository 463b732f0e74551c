import { QlobberDedup } from 'qlobber'
import { SHARE_MEMBER_PREFIX, systemLevel } from '../reserved-topics.js'

/** Topics whose matching nodes are remembered before the cache starts over. */
const CACHED_TOPICS = 10_000

/** What the emitter's MQTT matching does, so a route matches exactly what a subscription does [MQTT-4.7.1-3]. */
const MATCHING = { separator: '/', wildcard_one: '+', wildcard_some: '#', match_empty_levels: true } as const

/** One change to a node's filters, as the route channel carries it. */
export interface RouteChange {
  readonly node: string
  /** The node's change counter after this change. */
  readonly seq: number
  /** `+` added, `-` removed, `=` replaced (read the node again), `x` the node is gone. */
  readonly op: '+' | '-' | '=' | 'x'
  readonly filter: string
}

/**
 * The other nodes' subscription filters: which nodes a message on a topic must be sent
 * to. Kept current from the route channel; a node whose changes arrive with a gap in its
 * counter is read again whole (`stale` says which).
 */
export class RouteTable {
  readonly #matcher = new QlobberDedup(MATCHING)
  readonly #filters = new Map<string, Set<string>>()
  readonly #seq = new Map<string, number>()
  readonly #cache = new Map<string, readonly string[]>()
  /** `$` top levels some other node listens under, counted by filter. */
  readonly #levels = new Map<string, number>()

  /** Told when another node's member route of a shared subscription comes or goes (`$share-member/…`). */
  onMember: ((node: string, route: string, joined: boolean) => void) | undefined

  constructor (private readonly self: string) {}

  /** The nodes other than this one with a filter matching `topic`. */
  nodesFor (topic: string): readonly string[] {
    let nodes = this.#cache.get(topic)
    if (nodes === undefined) {
      nodes = [...this.#matcher.match(topic)]
      if (this.#cache.size >= CACHED_TOPICS) this.#cache.clear()
      this.#cache.set(topic, nodes)
    }
    return nodes
  }

  /** Whether another node listens under the `$` top level `level` (`$audit`). */
  listensUnder (level: string): boolean {
    return this.#levels.has(level)
  }

  /** The nodes known to have filters. */
  nodes (): string[] {
    return [...this.#filters.keys()]
  }

  /**
   * Apply one change. Returns the node to read again whole when the change cannot be
   * applied in order (a change was missed, or the node was replaced), else `undefined`.
   */
  apply (change: RouteChange): string | undefined {
    const { node, seq, op, filter } = change
    if (node === this.self) return undefined
    if (op === 'x') {
      this.drop(node)
      return undefined
    }
    const known = this.#seq.get(node) ?? 0
    if (seq <= known) return undefined
    if (op === '=' || seq !== known + 1) return node
    this.#seq.set(node, seq)
    if (op === '+') this.#add(node, filter)
    else this.#remove(node, filter)
    return undefined
  }

  /** Put `node`'s whole set of filters, as read at its change counter `seq`. */
  replace (node: string, seq: number, filters: readonly string[]): void {
    if (node === this.self) return
    if (seq < (this.#seq.get(node) ?? 0)) return
    this.drop(node)
    this.#seq.set(node, seq)
    for (const filter of filters) this.#add(node, filter)
  }

  /** Forget `node` and its filters. */
  drop (node: string): void {
    const filters = this.#filters.get(node)
    this.#seq.delete(node)
    if (filters === undefined) return
    for (const filter of [...filters]) this.#remove(node, filter)
  }

  #add (node: string, filter: string): void {
    let filters = this.#filters.get(node)
    if (filters === undefined) this.#filters.set(node, filters = new Set())
    if (filters.has(filter)) return
    filters.add(filter)
    if (filter.startsWith(SHARE_MEMBER_PREFIX)) {
      this.onMember?.(node, filter, true)
      return
    }
    this.#matcher.add(filter, node)
    this.#cache.clear()
    const level = systemLevel(filter)
    if (level !== undefined) this.#levels.set(level, (this.#levels.get(level) ?? 0) + 1)
  }

  #remove (node: string, filter: string): void {
    const filters = this.#filters.get(node)
    if (filters === undefined || !filters.delete(filter)) return
    if (filters.size === 0) this.#filters.delete(node)
    if (filter.startsWith(SHARE_MEMBER_PREFIX)) {
      this.onMember?.(node, filter, false)
      return
    }
    this.#matcher.remove(filter, node)
    this.#cache.clear()
    const level = systemLevel(filter)
    if (level === undefined) return
    const left = (this.#levels.get(level) ?? 1) - 1
    if (left === 0) this.#levels.delete(level)
    else this.#levels.set(level, left)
  }
}

/** Read a change off the route channel: `<node> <seq> <op> <filter>`; `undefined` for anything else. */
export function parseRouteChange (message: string): RouteChange | undefined {
  const first = message.indexOf(' ')
  const second = message.indexOf(' ', first + 1)
  if (first <= 0 || second === -1 || message.length < second + 2) return undefined
  const seq = Number(message.slice(first + 1, second))
  const op = message[second + 1]
  if (!Number.isSafeInteger(seq) || (op !== '+' && op !== '-' && op !== '=' && op !== 'x')) return undefined
  return { node: message.slice(0, first), seq, op, filter: message.slice(second + 3) }
}
