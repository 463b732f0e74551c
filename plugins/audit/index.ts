import { resolve } from 'node:path'
import { AUDIT_LEVEL, AUDIT_PREFIX, ConfigError, DEFAULT_OUTAGE_HOLD_MS, ConnectRefusedError, definePlugin, type Settings, type BrokerError, type ConnectAttempt, type PluginContext, type PublishAttempt, type PublishVerdict } from '../../src/core/index.js'
import { RecordWriter, compileRedactor, outcomeOf } from './record.js'
import { messagesRoutes } from './routes.js'
import { fileSink, streamSink, type AuditSink } from './sinks.js'
import { AuditTally, TurnFlush } from './flush.js'
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
  const sinks = await openSinks(ctx, opts)
  const recent = trail instanceof MemoryAuditTrail ? trail : undefined
  const records = new RecordWriter({ node: ctx.nodeId, payload: opts.payload, redact: compileRedactor(opts.redact) })
  const tally = new AuditTally(ctx.metrics)
  const turns = new TurnFlush(records, sinks, tally, ctx.reportError)

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
    if (sinks.length > 0 && delivered) attempt.keepUntil(turns.flushed())
    else turns.schedule()
  })

  function mirror (topic: string, line: Buffer): void {
    ctx.publish({ topic, payload: line }).then(
      () => { tally.count('topic', 'written', 1) },
      (err: unknown) => { tally.count('topic', 'failed', 1); ctx.reportError(err, { sink: 'topic', topic }) })
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
    turns.schedule()
  })

  ctx.log.info({ sinks: sinks.map((s) => s.name), recent: recent !== undefined, payload: opts.payload, redact: opts.redact }, 'audit ready')
  return async function stopAudit () {
    await turns.drain()
    for (const sink of sinks) await sink.close()
  }
}

/** The durable sinks the options ask for: the file (opened now, so a path that cannot be written stops start-up) and, with Redis, the stream. */
async function openSinks (ctx: PluginContext, opts: AuditOptions): Promise<AuditSink[]> {
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
  return sinks
}
