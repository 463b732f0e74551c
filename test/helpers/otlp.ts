import { defer } from './cleanup.js'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { TestContext } from 'node:test'
import { gunzipSync } from 'node:zlib'

/** A span as an OTLP/HTTP JSON export request carries it, its attributes read into plain values. */
export interface ExportedSpan {
  readonly traceId: string
  readonly spanId: string
  /** `''` for a root span. */
  readonly parentSpanId: string
  readonly traceState: string
  readonly name: string
  /** OTLP's SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  readonly kind: number
  readonly attributes: Readonly<Record<string, string | number | boolean>>
  /** OTLP's status code: 0 unset, 1 ok, 2 error. */
  readonly status: { readonly code: number, readonly message?: string }
  /** The attributes of the resource the span came with. */
  readonly resource: Readonly<Record<string, string | number | boolean>>
}

export const OTLP_KIND = { internal: 1, server: 2, client: 3, producer: 4, consumer: 5 } as const
export const OTLP_STATUS = { unset: 0, ok: 1, error: 2 } as const

export interface Collector {
  /** The traces endpoint, for `tracing.otlpUrl`. */
  readonly url: string
  /** Every span received so far, in arrival order. */
  readonly spans: ExportedSpan[]
  /** Export requests received (whatever their content). */
  readonly requests: () => number
  /** Answer the requests held (`hold`) and hold none from now on. */
  release: () => void
  /** Resolve with the spans received once `ready(spans)` holds; reject after `timeoutMs`. */
  waitFor: (ready: (spans: readonly ExportedSpan[]) => boolean, timeoutMs?: number) => Promise<readonly ExportedSpan[]>
}

export interface CollectorOptions {
  /** The status every export request is answered with. Default 200. */
  readonly status?: number
  /** Answer nothing until the test ends (a collector that hangs). Default false. */
  readonly hold?: boolean
}

/**
 * A real OTLP/HTTP receiver on 127.0.0.1 (a port of its own): decodes each export
 * request (`ExportTraceServiceRequest` in OTLP's JSON encoding, gzipped or not) and keeps
 * its spans, then answers as `options` say.
 */
export async function otlpCollector (t: TestContext, options: CollectorOptions = {}): Promise<Collector> {
  const spans: ExportedSpan[] = []
  const waiters = new Set<() => void>()
  const held: ServerResponse[] = []
  let requests = 0
  let holding = options.hold === true
  const release = (): void => {
    holding = false
    for (const res of held.splice(0)) if (!res.writableEnded) res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
  }
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => { chunks.push(chunk) })
    req.on('end', () => {
      requests++
      const raw = Buffer.concat(chunks)
      const body = req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw
      if (req.method !== 'POST' || req.url !== '/v1/traces' || !String(req.headers['content-type']).startsWith('application/json')) {
        res.writeHead(400).end()
        return
      }
      spans.push(...decode(JSON.parse(body.toString('utf8'))))
      for (const waiter of waiters) waiter()
      if (holding) held.push(res)
      else res.writeHead(options.status ?? 200, { 'content-type': 'application/json' }).end('{}')
    })
  })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  defer(t, async () => {
    release()
    server.closeAllConnections()
    await new Promise((resolve) => { server.close(resolve) })
  })
  const { port } = server.address() as AddressInfo
  const waitFor = async (ready: (got: readonly ExportedSpan[]) => boolean, timeoutMs = 10_000): Promise<readonly ExportedSpan[]> => {
    if (ready(spans)) return spans
    await new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if (!ready(spans)) return
        clearTimeout(timer)
        waiters.delete(check)
        resolve()
      }
      const timer = setTimeout(() => {
        waiters.delete(check)
        reject(new Error(`the spans waited for did not arrive; got ${spans.map((s) => s.name).join(', ') || 'none'}`))
      }, timeoutMs)
      waiters.add(check)
    })
    return spans
  }
  return { url: `http://127.0.0.1:${port}/v1/traces`, spans, requests: () => requests, release, waitFor }
}

function decode (request: unknown): ExportedSpan[] {
  const out: ExportedSpan[] = []
  for (const resourceSpans of list(field(request, 'resourceSpans'))) {
    const resource = attributesOf(field(field(resourceSpans, 'resource'), 'attributes'))
    for (const scopeSpans of list(field(resourceSpans, 'scopeSpans'))) {
      for (const span of list(field(scopeSpans, 'spans'))) {
        const status = field(span, 'status')
        const message = field(status, 'message')
        out.push({
          traceId: String(field(span, 'traceId')),
          spanId: String(field(span, 'spanId')),
          parentSpanId: String(field(span, 'parentSpanId') ?? ''),
          traceState: String(field(span, 'traceState') ?? ''),
          name: String(field(span, 'name')),
          kind: Number(field(span, 'kind')),
          attributes: attributesOf(field(span, 'attributes')),
          status: { code: Number(field(status, 'code') ?? 0), ...(typeof message === 'string' ? { message } : {}) },
          resource
        })
      }
    }
  }
  return out
}

/** OTLP JSON's `[{ key, value: { stringValue | intValue | doubleValue | boolValue } }]` as a record (int64 may come as a string). */
function attributesOf (attributes: unknown): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {}
  for (const attribute of list(attributes)) {
    const key = String(field(attribute, 'key'))
    const value = field(attribute, 'value')
    const s = field(value, 'stringValue')
    const i = field(value, 'intValue')
    const d = field(value, 'doubleValue')
    const b = field(value, 'boolValue')
    if (typeof s === 'string') out[key] = s
    else if (i !== undefined) out[key] = Number(i)
    else if (typeof d === 'number') out[key] = d
    else if (typeof b === 'boolean') out[key] = b
  }
  return out
}

function field (value: unknown, key: string): unknown {
  return typeof value === 'object' && value !== null ? Reflect.get(value, key) : undefined
}

function list (value: unknown): unknown[] {
  return Array.isArray(value) ? value : []
}
