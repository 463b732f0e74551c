import { resolve } from 'node:path'
import { Counter } from 'prom-client'
import { AUDIT_LEVEL, AUDIT_PREFIX, ConfigError, DEFAULT_OUTAGE_HOLD_MS, ConnectRefusedError, definePlugin, type Settings, type BrokerError, type ConnectAttempt, type PluginContext, type PublishAttempt, type PublishVerdict } from '../../src/core/index.js'
import { RecordWriter, compileRedactor, outcomeOf } from './record.js'
import { messagesRoutes } from './routes.js'
import { fileSink, streamSink, type AuditSink } from './sinks.js'
import { MemoryAuditTrail, RedisAuditTrail } from './trail.js'
import { auditSection } from './config.js'

export { fileSink, streamSink, type AuditSink } from './sinks.js'
export { compileRedactor, REDACTED, type AuditOutcome, type AuditRecord } from './record.js'
export { MemoryAuditTrail, RedisAuditTrail, type AuditTrail, type TrailMessage, type TrailPage } from './trail.js'
export { AUDIT_PREFIX } from '../../src/core/index.js'

/** Options of the audit plugin: the `audit` section of the config. */
export type AuditOptions = Settings<typeof auditSection.schema>

/** Where refused logins are mirrored: no publish topic starts with `$`, so none is audited there. */
export const CONNECT_TOPIC = `${AUDIT_PREFIX}$connect`

/**
 * One audit record (PRODUCT §3) for every publish on a validated topic, whatever
 * became of it: accepted, rejected (with the reason, the size limit included) or
 * duplicate. Each record is published on `$audit/<topic>` (unless `topic: false`) and
 * handed to the durable sinks, which write in batches once per event-loop turn: a publisher never waits
 * for the audit's I/O. Embedded, the records of accepted events are also kept in the
 * `recent` ring that `GET /api/mqtt/messages/:topic` reads. The plugin's own publishes skip the pipeline, so it never
 * audits its output.
 */
export const audit = definePlugin<AuditOptions>({ name: 'audit', sections: [auditSection], setup: setupAudit })

async function setupAudit (ctx: PluginContext, opts: AuditOptions): Promise<(() => Promise<void>) | undefined> {
  // what GET /api/mqtt/messages/:topic reads: embedded, this node's ring; with Redis, the audit stream
  const trail = ctx.redis === undefined ? new MemoryAuditTrail(opts.recent.maxEntries, opts.recent.maxBytes) : new RedisAuditTrail(ctx.redis, opts.stream.key)
  ctx.routes(async function routes (app) { await app.register(messagesRoutes, { auditTrail: trail }) })
  if (!opts.enabled) return undefined
  const sinks: AuditSink[] = []
  if (opts.file !== undefined) {
    const file = resolve(opts.file)
    try {
      sinks.push(await fileSink(file, (err) => { ctx.reportError(err, { sink: 'file', file }) }))
    } catch (err: unknown) {
      throw new ConfigError('audit plugin', 'audit.file', `cannot be opened for appending: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
    }
  }
  if (ctx.redis !== undefined) sinks.push(streamSink(ctx.redis, opts.stream.key, opts.stream.maxLen, ctx.config.redis?.outageHoldMs ?? DEFAULT_OUTAGE_HOLD_MS))
  const recent = trail instanceof MemoryAuditTrail ? trail : undefined
  const records = new RecordWriter({ node: ctx.nodeId, payload: opts.payload, redact: compileRedactor(opts.redact) })
  // plain numbers on the hot path, copied into prom-client at scrape time
  const tally = new Map<string, number>()
  const count = (sink: string, result: 'written' | 'failed', n: number): void => {
    const key = `${sink}\n${result}`
    tally.set(key, (tally.get(key) ?? 0) + n)
  }
  new Counter({
    name: 'ce_broker_audit_records_total',
    help: 'Audit records by sink (topic, file, stream) and result (written, failed)',
    labelNames: ['sink', 'result'] as const,
    registers: [ctx.metrics],
    collect () {
      this.reset()
      for (const [key, n] of tally) {
        const [sink = '', result = ''] = key.split('\n')
        this.inc({ sink, result }, n)
      }
    }
  })

  let flushing: Promise<void> = Promise.resolve()
  let scheduled = false
  /** Settles once the sinks have taken this turn's lines, rejecting when one did not (made only when asked for). */
  let turn: { promise: Promise<void>, resolve: () => void, reject: (err: Error) => void } | undefined
  /** The lines go to the sinks once per loop turn (and are let go of when there are none). */
  function scheduleFlush (): void {
    if (scheduled) return
    scheduled = true
    setImmediate(flush)
  }
  /**
   * This turn's flush, for an acknowledgement that waits for its audit entry
   * (`keepUntil`): a sink that could not write the lines fails it, so the event is not
   * acknowledged and its journal entry is finished again later, audit entry included.
   */
  function flushed (): Promise<void> {
    if (turn === undefined) {
      let resolve = (): void => {}
      let reject = (_err: Error): void => {}
      const promise = new Promise<void>((resolved, rejected) => { resolve = resolved; reject = rejected })
      // whoever waits for it hears of a failure; nobody waiting is no unhandled rejection (the sinks' errors are reported)
      promise.catch(() => {})
      turn = { promise, resolve, reject }
    }
    scheduleFlush()
    return turn.promise
  }
  function flush (): void {
    scheduled = false
    const waiting = turn
    turn = undefined
    const batch = records.take()
    const writes: Array<Promise<boolean>> = []
    if (batch.count > 0) {
      for (const sink of sinks) {
        /** Count what the sink wrote; whether it wrote every line. */
        const wrote = (written: number): boolean => {
          count(sink.name, 'written', written)
          if (written < batch.count) count(sink.name, 'failed', batch.count - written)
          return written === batch.count
        }
        try {
          const result = sink.write(batch)
          writes.push(typeof result === 'number'
            ? Promise.resolve(wrote(result))
            : result.then(wrote, (err: unknown) => { ctx.reportError(err, { sink: sink.name }); return wrote(0) }))
        } catch (err: unknown) {
          ctx.reportError(err, { sink: sink.name })
          writes.push(Promise.resolve(wrote(0)))
        }
      }
    }
    const all = Promise.all(writes)
    if (writes.length > 0) flushing = Promise.all([flushing, all]).then(() => undefined)
    if (waiting !== undefined) {
      void all.then((done) => {
        if (done.every(Boolean)) waiting.resolve()
        else waiting.reject(new Error('an audit sink did not take the records of this turn'))
      })
    }
  }

  ctx.hooks.decided(function auditPublish (attempt: PublishAttempt, verdict: PublishVerdict): void {
    // the live mirror only while a subscription may get it: no message per event for nobody
    const watched = opts.topic && ctx.listening(AUDIT_LEVEL)
    if (!watched && sinks.length === 0 && recent === undefined) return
    const audited = outcomeOf(attempt, verdict)
    if (audited === undefined) return
    // accepted, or delivered as accepted while its schema is in shadow mode
    const delivered = audited.outcome === 'accepted' || audited.outcome === 'would_reject'
    const kept = recent !== undefined && delivered
    if (!watched && sinks.length === 0 && !kept) return
    const line = records.append(attempt, audited, watched || kept)
    if (line !== undefined) {
      if (kept) recent.push(attempt.topic, line)
      if (watched) mirror(attempt.topic === '' ? AUDIT_LEVEL : AUDIT_PREFIX + attempt.topic, line)
    }
    // with Redis, an accepted event is acknowledged once its stream entry is written
    if (sinks.length > 0 && delivered) attempt.keepUntil(flushed())
    else scheduleFlush()
  })

  function mirror (topic: string, line: Buffer): void {
    ctx.publish({ topic, payload: line }).then(
      () => { count('topic', 'written', 1) },
      (err: unknown) => { count('topic', 'failed', 1); ctx.reportError(err, { sink: 'topic', topic }) })
  }

  // a refused login (bad credentials, rate limited, ...): `$audit/$connect` and the logs
  ctx.hooks.connectRefused(function auditRefusedConnect (attempt: ConnectAttempt, error: BrokerError): void {
    const watched = opts.topic && ctx.listening(AUDIT_LEVEL)
    const line = records.appendValue({
      outcome: 'refused',
      reason: error.reason,
      clientId: attempt.clientId,
      ...(attempt.username === undefined ? {} : { username: attempt.username }),
      remoteAddress: attempt.remoteAddress ?? null,
      transport: attempt.transport,
      ...(error instanceof ConnectRefusedError ? { returnCode: error.returnCode } : {})
    }, watched)
    if (line !== undefined) mirror(CONNECT_TOPIC, line)
    scheduleFlush()
  })

  ctx.log.info({ sinks: sinks.map((s) => s.name), recent: recent !== undefined, payload: opts.payload, redact: opts.redact }, 'audit ready')
  return async function stopAudit () {
    flush()
    await flushing
    for (const sink of sinks) await sink.close()
  }
}
