/**
 * The live dashboard: one page, no framework. It talks MQTT over this origin's
 * WebSocket (`/mqtt`) for what happens now — audit records on `$audit/<filter>`, dead
 * letters on `$DLQ/#`, each node's stats on `$SYS/ce-broker/+/stats` — and the HTTP API
 * for what is stored (dead letters, webhooks, the catalog) and for replay and delete.
 */
import mqtt, { type IClientSubscribeOptions, type MqttClient } from 'mqtt'
import uPlot from 'uplot'
import 'uplot/dist/uPlot.min.css'
import './style.css'
import { ApiError, api, askForCredentials, credentials, saveCredentials } from './api.js'
import { $, clock, h, json } from './dom.js'
import { deadLetterFilter, setUpRedrive } from './redrive.js'
import { AUDIT_PREFIX, DLQ_PREFIX, STATS_PREFIX } from '../src/core/reserved-topics.js'
import { OUTCOMES, type AuditRecord, type CatalogEntry, type DeadLetter, type NodeStats, type Outcome, type SchemaListing, type WebhookState } from './messages.js'

// ---- sign-in -------------------------------------------------------------------------

$<HTMLFormElement>('login').addEventListener('submit', (event) => {
  event.preventDefault()
  saveCredentials(new FormData(event.currentTarget as HTMLFormElement))
  connect()
  void refreshAll()
})

// ---- MQTT over WebSocket ----------------------------------------------------------

let client: MqttClient | undefined
let streamFilter = '#'

function connect (): void {
  client?.end(true)
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/mqtt`
  const options = {
    clientId: `dashboard-${Math.random().toString(16).slice(2, 10)}`,
    reconnectPeriod: 2000,
    ...(credentials.username === '' ? {} : { username: credentials.username, password: credentials.password })
  }
  const current = mqtt.connect(url, options)
  client = current
  setConnection('connecting…', 'pending')
  current.on('connect', () => {
    setConnection('live', 'ok')
    subscribe(current, `${STATS_PREFIX}+/stats`)
    subscribe(current, `${DLQ_PREFIX}#`)
    subscribe(current, AUDIT_PREFIX + streamFilter, $('filter-status'))
  })
  current.on('error', (err: Error & { code?: number }) => {
    // 4: bad user name or password, 5: not authorized (no credentials)
    if (err.code === 4 || err.code === 5) {
      current.end(true)
      setConnection('not signed in', 'error')
      askForCredentials('mqtt', err.code === 4 ? 'The broker refused that MQTT user name or password.' : 'The broker wants an MQTT user name and password.')
    }
  })
  current.on('offline', () => { setConnection('offline, reconnecting…', 'error') })
  current.on('message', (topic, payload) => {
    try {
      if (topic.startsWith(AUDIT_PREFIX)) onAudit(JSON.parse(payload.toString()) as AuditRecord)
      else if (topic.startsWith(STATS_PREFIX)) onStats(JSON.parse(payload.toString()) as NodeStats)
      else if (topic.startsWith(DLQ_PREFIX)) scheduleDeadLetters()
    } catch (err: unknown) {
      // a message that is not what we expect is shown, not thrown
      console.warn('unreadable message on', topic, err)
    }
  })
}

function subscribe (to: MqttClient, filter: string, status?: HTMLElement): void {
  const options: IClientSubscribeOptions = { qos: 0 }
  to.subscribe(filter, options, (err, granted) => {
    const refused = err !== null && err !== undefined ? err.message : granted?.[0]?.qos === 128 ? 'not allowed (ACL)' : undefined
    if (status !== undefined) status.textContent = refused === undefined ? `watching ${AUDIT_PREFIX}${streamFilter}` : `${filter}: ${refused}`
    else if (refused !== undefined) console.info(`subscription to ${filter} refused: ${refused}`)
  })
}

function setConnection (text: string, state: 'ok' | 'pending' | 'error'): void {
  const element = $('connection')
  element.textContent = text
  element.dataset.state = state
}

// ---- the live stream ----------------------------------------------------------------

const MAX_EVENTS = 200

function onAudit (record: AuditRecord): void {
  const list = $('events')
  const body = record.payload ?? (record.payloadBase64 !== undefined ? { payloadBase64: record.payloadBase64 } : record)
  const item = h('li', { class: `event ${record.outcome}`, 'data-outcome': record.outcome },
    h('details', {},
      h('summary', {},
        h('time', {}, clock(record.at)),
        h('span', { class: 'badge' }, record.outcome),
        h('span', { class: 'type' }, record.event.type ?? record.topic),
        h('span', { class: 'who' }, record.clientId ?? 'http'),
        record.reason === undefined ? null : h('span', { class: 'reason' }, record.reason)
      ),
      h('pre', {}, json(body))
    )
  )
  list.prepend(item)
  while (list.children.length > MAX_EVENTS) list.lastElementChild?.remove()
}

$<HTMLFormElement>('filter-form').addEventListener('submit', (event) => {
  event.preventDefault()
  const next = $<HTMLInputElement>('filter').value.trim() || '#'
  if (client === undefined || next === streamFilter) return
  client.unsubscribe(AUDIT_PREFIX + streamFilter)
  streamFilter = next
  $('events').replaceChildren()
  subscribe(client, AUDIT_PREFIX + streamFilter, $('filter-status'))
})

// ---- rates, from each node's stats -------------------------------------------------

const WINDOW_S = 5 * 60
const lastTotals = new Map<string, { at: number, events: Record<Outcome, number> }>()
/** bucket start (s) → events per second by outcome, all nodes added up */
const buckets = new Map<number, Record<Outcome, number>>()
let chart: uPlot | undefined

function onStats (stats: NodeStats): void {
  nodeStats.set(stats.node, stats)
  $('nodes').textContent = `${nodeStats.size} node${nodeStats.size === 1 ? '' : 's'} · ${[...nodeStats.values()].reduce((n, s) => n + s.clients, 0)} clients`
  const at = Date.parse(stats.at) / 1000
  const before = lastTotals.get(stats.node)
  lastTotals.set(stats.node, { at, events: stats.events })
  renderWebhooks()
  if (before === undefined || at <= before.at) return
  const step = stats.intervalMs / 1000
  const bucket = Math.floor(at / step) * step
  const rates = buckets.get(bucket) ?? { accepted: 0, rejected: 0, duplicate: 0 }
  // a restarted node counts from 0 again: its first difference is no rate
  for (const outcome of OUTCOMES) rates[outcome] += Math.max(0, stats.events[outcome] - before.events[outcome]) / (at - before.at)
  buckets.set(bucket, rates)
  for (const key of buckets.keys()) if (key < bucket - WINDOW_S) buckets.delete(key)
  drawChart()
}

function drawChart (): void {
  const times = [...buckets.keys()].sort((a, b) => a - b)
  const data: uPlot.AlignedData = [times, ...OUTCOMES.map((outcome) => times.map((t) => buckets.get(t)?.[outcome] ?? 0))]
  if (chart === undefined) {
    const target = $('chart')
    chart = new uPlot({
      width: Math.max(320, target.clientWidth),
      height: 220,
      series: [
        {},
        { label: 'accepted', stroke: '#2e7d32', width: 2 },
        { label: 'rejected', stroke: '#c62828', width: 2 },
        { label: 'duplicate', stroke: '#f9a825', width: 2 }
      ],
      // the last five minutes, whatever has come in yet
      scales: { x: { time: true, range: () => { const now = Date.now() / 1000; return [now - WINDOW_S, now] } }, y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
      axes: [{}, { label: 'events/s' }]
    }, data, target)
    window.addEventListener('resize', () => { chart?.setSize({ width: Math.max(320, target.clientWidth), height: 220 }) })
  } else {
    chart.setData(data)
  }
}

// ---- webhooks: the latest stats of each node, added up -------------------------------

const nodeStats = new Map<string, NodeStats>()
let listedWebhooks: WebhookState[] = []

const BREAKER_RANK = { closed: 0, 'half-open': 1, open: 2 } as const

function renderWebhooks (): void {
  const merged = new Map<string, WebhookState>()
  const sources = nodeStats.size === 0 ? [listedWebhooks] : [...nodeStats.values()].map((s) => s.webhooks)
  for (const list of sources) {
    for (const hook of list) {
      const seen = merged.get(hook.id)
      if (seen === undefined) {
        merged.set(hook.id, { ...hook })
        continue
      }
      seen.delivered += hook.delivered
      seen.concurrency = (seen.concurrency ?? 0) + (hook.concurrency ?? 0)
      seen.failed += hook.failed
      // the queue is shared with Redis: every node reads the same depth
      seen.queued = Math.max(seen.queued, hook.queued)
      if (BREAKER_RANK[hook.breaker] > BREAKER_RANK[seen.breaker]) seen.breaker = hook.breaker
      if ((hook.lastAt ?? '') > (seen.lastAt ?? '')) {
        seen.lastAt = hook.lastAt
        seen.lastStatus = hook.lastStatus
      }
    }
  }
  const rows = [...merged.values()].sort((a, b) => a.service_id.localeCompare(b.service_id)).map((hook) =>
    h('tr', { 'data-webhook': hook.id },
      h('td', {}, hook.service_id),
      h('td', { class: 'url' }, hook.webhook_url),
      h('td', {}, hook.topic_filters.join(', '), (hook.filters?.length ?? 0) > 0 ? ` + ${hook.filters?.length ?? 0} attribute filter${hook.filters?.length === 1 ? '' : 's'}` : '', (hook.ordering ?? 'none') !== 'none' ? `, ordered by ${hook.ordering ?? ''}` : ''),
      h('td', { class: `breaker ${hook.breaker}`, 'data-testid': 'breaker' }, hook.disabled === undefined ? hook.breaker : `disabled: ${hook.disabled.reason}`),
      h('td', { 'data-testid': 'last-status' }, hook.lastStatus ?? '—', hook.lastAt === null ? '' : ` at ${clock(hook.lastAt)}`),
      h('td', { 'data-testid': 'concurrency' }, hook.concurrency ?? '—'),
      h('td', { 'data-testid': 'queued' }, hook.queued),
      h('td', { 'data-testid': 'delivered' }, hook.delivered),
      h('td', { 'data-testid': 'failed' }, hook.failed)
    ))
  $('webhook-rows').replaceChildren(...(rows.length === 0 ? [h('tr', {}, h('td', { colspan: '9', class: 'note' }, 'No webhook subscriptions.'))] : rows))
}

async function loadWebhooks (): Promise<void> {
  listedWebhooks = (await api<{ subscriptions: WebhookState[] }>('/api/webhooks')).subscriptions
  renderWebhooks()
}

// ---- dead letters ---------------------------------------------------------------------

const DEAD_LETTER_PAGE = 100
let deadLetterTimer: ReturnType<typeof setTimeout> | undefined

/** Many dead letters at once read the list once. */
function scheduleDeadLetters (): void {
  if (deadLetterTimer !== undefined) return
  deadLetterTimer = setTimeout(() => {
    deadLetterTimer = undefined
    void loadDeadLetters().catch(showDeadLetterError)
  }, 300)
}

function showDeadLetterError (err: unknown): void {
  $('dlq-status').textContent = err instanceof Error ? err.message : String(err)
}

async function loadDeadLetters (): Promise<void> {
  const query = new URLSearchParams({ limit: String(DEAD_LETTER_PAGE), ...deadLetterFilter() })
  const { items, next } = await api<{ items: DeadLetter[], next?: string }>(`/api/dlq?${query.toString()}`)
  $('dlq-count').textContent = next === undefined ? `${items.length}` : `newest ${items.length}`
  const rows = items.map(({ id, record }) => {
    const { data } = record
    const errors = data.errors?.map((e) => e.path === '' ? e.message : `${e.path}: ${e.message}`).join('; ') ??
      (data.lastStatus === undefined ? '' : `last status ${data.lastStatus}`)
    return h('tr', { 'data-dead-letter': id },
      h('td', {}, clock(record.time)),
      h('td', { class: 'reason' }, data.reason),
      h('td', {}, data.topic),
      h('td', {}, data.subscription === undefined ? data.clientId ?? '—' : `→ ${serviceOf(data.subscription)}`),
      h('td', { class: 'errors' }, errors,
        h('details', {}, h('summary', {}, 'payload'), h('pre', {}, json(data.payload ?? data.payloadBase64 ?? null)))),
      h('td', { class: 'actions' },
        button('Replay', 'replay', () => replay(id)),
        button('Delete', 'delete', () => remove(id)))
    )
  })
  $('dlq').replaceChildren(...(rows.length === 0 ? [h('tr', {}, h('td', { colspan: '6', class: 'note' }, 'No dead letters.'))] : rows))
}

/** The service a webhook subscription delivers to, by its id, as the page last saw it. */
function serviceOf (subscription: string): string {
  for (const list of [listedWebhooks, ...[...nodeStats.values()].map((s) => s.webhooks)]) {
    const found = list.find((hook) => hook.id === subscription)
    if (found !== undefined) return found.service_id
  }
  return subscription
}

function button (label: string, action: string, onClick: () => Promise<void>): HTMLElement {
  const element = h('button', { type: 'button', 'data-action': action }, label)
  element.addEventListener('click', () => { onClick().catch(showDeadLetterError) })
  return element
}

async function replay (id: string): Promise<void> {
  try {
    const result = await api<{ replayed?: boolean, redelivering?: boolean }>(`/api/dlq/${encodeURIComponent(id)}/replay`, { method: 'POST' })
    $('dlq-status').textContent = result.redelivering === true ? `${id}: delivering to its webhook again` : `${id}: replayed and accepted`
  } catch (err: unknown) {
    $('dlq-status').textContent = err instanceof ApiError && err.status === 403 ? 'Replaying needs an API key with the admin scope.' : `${id}: ${err instanceof Error ? err.message : String(err)}`
  }
  await loadDeadLetters()
}

async function remove (id: string): Promise<void> {
  await api(`/api/dlq/${encodeURIComponent(id)}`, { method: 'DELETE' })
  $('dlq-status').textContent = `${id}: deleted`
  await loadDeadLetters()
}

$('dlq-refresh').addEventListener('click', () => { loadDeadLetters().catch(showDeadLetterError) })
setUpRedrive(loadDeadLetters)

// ---- the schema registry -----------------------------------------------------------------

async function loadSchemas (): Promise<void> {
  const { schemas } = await api<{ schemas: SchemaListing[] }>('/api/schemas')
  $('schema-rows').replaceChildren(...schemas.map((s) => h('tr', { 'data-type': s.type },
    h('td', {}, h('code', {}, s.type)),
    h('td', {}, String(s.version)),
    h('td', {}, String(s.versions)),
    h('td', {}, s.compatibility),
    h('td', { class: s.mode === 'shadow' ? 'warn' : '' }, s.mode),
    h('td', {}, s.mode === 'shadow' || s.shadowFailures > 0 ? String(s.shadowFailures) : ''))))
}

// ---- the catalog ------------------------------------------------------------------------

async function loadCatalog (): Promise<void> {
  const { types } = await api<{ types: CatalogEntry[] }>('/api/catalog')
  const open = new Set([...document.querySelectorAll<HTMLDetailsElement>('#catalog-types details[open]')].map((d) => d.dataset.type))
  $('catalog-types').replaceChildren(...types.map((entry) => {
    const details = h('details', { 'data-type': entry.type },
      h('summary', {},
        h('span', { class: 'type' }, entry.type),
        h('span', { class: 'note' }, ` ${entry.publishers.length} publisher${entry.publishers.length === 1 ? '' : 's'}, ${entry.subscribers.webhooks.length + entry.subscribers.mqtt.length} subscriber${entry.subscribers.webhooks.length + entry.subscribers.mqtt.length === 1 ? '' : 's'}`)),
      entry.schema === null
        ? h('p', { class: 'note' }, 'No schema registered.')
        : h('div', {},
          h('p', {}, entry.schema.title ?? '', h('span', { class: 'note' }, ` ${entry.schema.file}, version ${entry.schema.version} (${entry.schema.history.map((v) => `${v.version}: ${v.registeredAt === '' ? 'start-up' : clock(v.registeredAt)}`).join(', ')})`)),
          h('table', {},
            h('thead', {}, h('tr', {}, h('th', {}, 'field'), h('th', {}, 'type'), h('th', {}, 'required'), h('th', {}, 'description'))),
            h('tbody', {}, ...entry.schema.fields.map((f) => h('tr', {},
              h('td', {}, h('code', {}, f.path)),
              h('td', {}, f.format === undefined ? f.type : `${f.type} (${f.format})`),
              h('td', {}, f.required ? 'yes' : ''),
              h('td', {}, f.description ?? '')))))),
      h('p', {}, h('strong', {}, 'Publishers: '), entry.publishers.length === 0 ? 'none seen' : entry.publishers.map((p) => `${p.publisher} (last ${clock(p.lastSeen)})`).join(', ')),
      h('p', {}, h('strong', {}, 'Subscribers: '),
        [...entry.subscribers.webhooks.map((w) => `webhook ${w.service_id}`), ...entry.subscribers.mqtt.map((m) => `MQTT ${m.clientId} (${m.filter})`)].join(', ') || 'none')
    )
    if (open.has(entry.type)) details.setAttribute('open', '')
    return details
  }))
}

$('catalog-markdown').addEventListener('click', (event) => {
  event.preventDefault()
  api<string>('/api/catalog', {}, 'text/markdown').then((markdown) => {
    const link = h('a', { href: URL.createObjectURL(new Blob([markdown], { type: 'text/markdown' })), download: 'event-catalog.md' })
    link.click()
  }).catch((err: unknown) => { console.warn('catalog as Markdown:', err) })
})

// ---- start ------------------------------------------------------------------------------

async function refreshAll (): Promise<void> {
  const results = await Promise.allSettled([loadDeadLetters(), loadWebhooks(), loadSchemas(), loadCatalog()])
  for (const result of results) if (result.status === 'rejected' && !(result.reason instanceof ApiError && result.reason.status === 401)) console.warn(result.reason)
}

drawChart()
connect()
void refreshAll()
// the catalog's publishers and subscribers change without a message saying so, and so
// do dead letters that another operator (or a redelivery) removed
setInterval(() => {
  if (!$('login').hidden) return
  loadCatalog().catch(() => {})
  loadSchemas().catch(() => {})
  loadDeadLetters().catch(showDeadLetterError)
}, 10_000)
