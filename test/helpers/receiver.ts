import assert from 'node:assert/strict'
import { defer } from './cleanup.js'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { TestContext } from 'node:test'

/** A webhook request as the receiver got it. */
export interface WebhookRequest {
  readonly headers: Record<string, string>
  readonly body: string
}

export interface Receiver {
  readonly url: string
  readonly requests: WebhookRequest[]
  /** The first `count` requests, once that many have arrived; a rejection after `timeoutMs`. */
  next: (count: number, timeoutMs?: number) => Promise<WebhookRequest[]>
}

/** A real HTTP receiver on 127.0.0.1: answers each request with `answer(n)` (n counts from 1) and records it. */
export async function receiver (t: TestContext, answer: (n: number, res: ServerResponse) => void = (_n, res) => { res.writeHead(200).end() }): Promise<Receiver> {
  const requests: WebhookRequest[] = []
  const waiters: Array<{ count: number, resolve: () => void }> = []
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => { chunks.push(chunk) })
    req.on('end', () => {
      const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : String(v)]))
      requests.push({ headers, body: Buffer.concat(chunks).toString('utf8') })
      for (const waiter of waiters.filter((w) => requests.length >= w.count)) waiter.resolve()
      answer(requests.length, res)
    })
  })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  defer(t, async () => {
    server.closeAllConnections()
    await new Promise((resolve) => { server.close(resolve) })
  })
  const { port } = server.address() as AddressInfo
  const next = async (count: number, timeoutMs = 10_000): Promise<WebhookRequest[]> => {
    if (requests.length >= count) return requests.slice(0, count)
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error(`got ${requests.length} of ${count} webhook requests`)) }, timeoutMs)
      waiters.push({ count, resolve: () => { clearTimeout(timer); resolve() } })
    })
    return requests.slice(0, count)
  }
  return { url: `http://127.0.0.1:${port}/hooks`, requests, next }
}

/** A real HTTP server on `host` (any local address, `::` included) answering 200 and counting what reaches it. */
export async function listenOn (t: TestContext, host: string): Promise<{ readonly port: number, readonly hits: () => number }> {
  let hits = 0
  const server = createServer(function countHit (_req, res) {
    hits++
    res.writeHead(200).end()
  })
  await new Promise<void>((resolve) => { server.listen(0, host, resolve) })
  defer(t, async () => {
    server.closeAllConnections()
    await new Promise((resolve) => { server.close(resolve) })
  })
  const address = server.address()
  assert.ok(typeof address === 'object' && address !== null)
  return { port: address.port, hits: () => hits }
}
