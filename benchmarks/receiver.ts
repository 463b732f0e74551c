/**
 * Webhook receiver child of `run.js`: `node receiver.js`. The endpoint ce-broker's
 * webhook subscription points at in the webhook scenarios.
 *
 * A `node:http` server on 127.0.0.1, any free port, with keep-alive (the broker's undici
 * Agent keeps its connections open) and TCP_NODELAY: every request is answered `200` at once, with an
 * empty body, before its body is read; the body is discarded. It counts requests, counts
 * those without a `webhook-signature` header (the scenarios sign every delivery, so that
 * should stay 0), and for requests carrying a send stamp (`ce-sentat`, the paced load)
 * records publish → received latency, taken when the request's headers have been parsed.
 *
 * It runs in a process of its own, like the load generator, so that what it spends
 * (HTTP parsing, responses) shows up as its own CPU share rather than in the broker's
 * or the load generator's. Sends `{ type: 'ready', port }`, answers stats and latency
 * requests, and exits 0 on SIGTERM or when `run.js` goes away.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { performance } from 'node:perf_hooks'
import { LatencyLog, SEND_STAMP_HEADER, wallClockMs } from './latency.js'
import { isReceiverRequest, RECEIVER_PATH, type ReceiverMessage } from './protocol.js'
import { listenOnFreePort } from './listen.js'

/**
 * Keep-alive timeout, in ms: longer than any pause of a run, so that a connection the
 * broker's Agent pooled is never closed under it (Node's default is 5 s).
 */
const KEEP_ALIVE_MS = 60_000
/** How long closing may take before the process reports what still holds it, in ms. */
const CLOSE_GRACE_MS = 5_000

function send (message: ReceiverMessage): void {
  process.send?.(message)
}

async function main (): Promise<void> {
  if (process.send === undefined) throw new Error('receiver.js is started by run.js with an IPC channel (fork)')
  let requests = 0
  let unsigned = 0
  let misrouted = 0
  const latencies = new LatencyLog()

  // HTTP keep-alive is on by default; noDelay (Node's default too, said here because the
  // latency figures depend on it): a response is not held back waiting for an ACK
  const server = createServer({ noDelay: true, keepAliveTimeout: KEEP_ALIVE_MS }, function onRequest (req: IncomingMessage, res: ServerResponse) {
    // the arrival time first: everything after it is the receiver's own cost
    const arrivedAt = wallClockMs()
    // anything but the subscription's POST is a misrouted benchmark: counted, reported at exit
    if (req.method !== 'POST' || req.url !== RECEIVER_PATH) {
      misrouted++
      res.writeHead(404).end()
      req.resume()
      return
    }
    requests++
    if (req.headers['webhook-signature'] === undefined) unsigned++
    const stamp = req.headers[SEND_STAMP_HEADER]
    if (typeof stamp === 'string') {
      const sentAt = Number(stamp)
      if (Number.isFinite(sentAt)) latencies.add(sentAt, arrivedAt - sentAt)
    }
    // 200 before the body is read: the broker's request completes as soon as it can;
    // the body is drained so that the connection stays usable for the next one
    res.writeHead(200, { 'content-length': '0' }).end()
    req.resume()
  })
  const port = await listenOnFreePort(server, 'receiver')

  function answer (message: unknown): void {
    if (!isReceiverRequest(message)) return
    if (message.type === 'latency') {
      send({ type: 'latency', id: message.id, summary: latencies.summary(message.fromMs, message.toMs) })
      return
    }
    const cpu = process.cpuUsage()
    send({ type: 'stats', id: message.id, requests, unsigned, stamped: latencies.size, cpuMicros: cpu.user + cpu.system, nowMs: performance.now() })
  }

  let stopping = false
  function stop (): void {
    if (stopping) return
    stopping = true
    process.off('message', answer)
    if (misrouted > 0) process.stderr.write(`receiver.js: ${misrouted} requests to something other than POST ${RECEIVER_PATH}\n`)
    // the broker has closed by now (run.js stops it first): drop whatever connection is left
    server.closeAllConnections()
    server.close(function closed () {
      if (process.connected) process.disconnect()
      // unref'd: fires only if something still holds the process open, which is a bug worth seeing
      setTimeout(function stuck () {
        process.stderr.write(`receiver.js: still running ${CLOSE_GRACE_MS} ms after close\n`)
        process.exit(1)
      }, CLOSE_GRACE_MS).unref()
    })
  }

  process.on('message', answer)
  process.once('SIGTERM', stop)
  process.once('disconnect', stop)
  send({ type: 'ready', port })
}

main().catch(function failed (err: unknown) {
  process.stderr.write(`receiver.js: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
  process.exit(1)
})
