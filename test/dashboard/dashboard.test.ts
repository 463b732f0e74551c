import assert from 'node:assert/strict'
import { before, test } from 'node:test'
import { fastify } from 'fastify'
import { buildDashboard } from '../../scripts/build-dashboard.js'
import { dashboardRoutes } from '../../src/core/http/routes/dashboard.js'
import { hashApiKey } from '../../src/index.js'
import { hashPassword } from '../../plugins/auth/passwords.js'
import { chromiumUnavailable, openPage } from '../helpers/browser.js'
import { connect, httpUrl, mqttUrl, startBroker } from '../helpers/broker.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved } from '../helpers/events.js'
import { receiver } from '../helpers/receiver.js'

const skip = chromiumUnavailable() ?? false
/** Long enough for a loaded machine; the page shows things within a second or two. */
const SHOWN_MS = 15_000

// the broker serves what `npm run build` wrote; build it as that would
before(async () => { await buildDashboard() })

test('the page, its script and its styles are public and same-origin only; what they show needs the read scope', async (t) => {
  const key = 'ceb_page-test-key-0123456789abcdef'
  const broker = await startBroker(t, { auth: { apiKeys: [{ id: 'reader', key: hashApiKey(key), scopes: ['read'] }] } })
  const page = await fetch(httpUrl(broker, '/'))
  assert.equal(page.status, 200)
  assert.match(page.headers.get('content-type') ?? '', /^text\/html/)
  assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'self'; connect-src 'self'/)
  assert.match(await page.text(), /<script type="module" src="\/dashboard\/app.js"><\/script>/)
  const script = await fetch(httpUrl(broker, '/dashboard/app.js'))
  assert.equal(script.status, 200)
  assert.match(script.headers.get('content-type') ?? '', /^text\/javascript/)
  // the mqtt browser build and uPlot are in the bundle: nothing comes from elsewhere
  assert.match(await script.text(), /uplot/i)
  assert.equal((await fetch(httpUrl(broker, '/dashboard/app.css'))).status, 200)
  // fetch asks for gzip and undoes it; a revalidation with the ETag costs no body
  assert.equal(script.headers.get('content-encoding'), 'gzip')
  const etag = script.headers.get('etag') ?? ''
  assert.equal((await fetch(httpUrl(broker, '/dashboard/app.js'), { headers: { 'if-none-match': etag } })).status, 304)
  for (const path of ['/api/dlq', '/api/webhooks', '/api/catalog']) assert.equal((await fetch(httpUrl(broker, path))).status, 401, path)
})

test('without a build, GET / answers 503 saying how to make one', async () => {
  const app = fastify()
  await app.register(dashboardRoutes, { dir: undefined })
  const answer = await app.inject({ method: 'GET', url: '/' })
  assert.equal(answer.statusCode, 503)
  assert.deepEqual(answer.json(), { error: { code: 'not_built', message: 'the dashboard is not built: run npm run build' } })
  await app.close()
})

test('the dashboard loads with no console errors, connects over MQTT/WebSocket and shows an event published over MQTT, expandable to its JSON', { skip }, async (t) => {
  const broker = await startBroker(t)
  const { page, errors } = await openPage(t, httpUrl(broker, '/'))
  await page.locator('[data-testid=connection]', { hasText: 'live' }).waitFor({ timeout: SHOWN_MS })
  // the stream is subscribed once the page says what it watches
  await page.locator('[data-testid=filter-status]', { hasText: 'watching $audit/#' }).waitFor({ timeout: SHOWN_MS })

  const publisher = await connect(t, mqttUrl(broker), { clientId: 'booking-service' })
  const event = bookingReserved()
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })

  const row = page.locator('[data-testid=events] li[data-outcome=accepted]', { hasText: 'albergue.v1.booking.reserved' })
  await row.waitFor({ timeout: SHOWN_MS })
  assert.match(await row.locator('summary').innerText(), /booking-service/)
  await row.locator('summary').click()
  const shown = JSON.parse(await row.locator('pre').innerText()) as { id: string, data: { nights: number } }
  assert.equal(shown.id, event.id)
  assert.equal(shown.data.nights, 1)

  // each node's stats reach the page: the chart's node count, and its canvas
  await page.locator('[data-testid=nodes]', { hasText: '1 node' }).waitFor({ timeout: SHOWN_MS })
  assert.equal(await page.locator('[data-testid=chart] canvas').count(), 1)
  // the catalog lists the bundled types with their fields
  const reserved = page.locator('[data-testid=catalog] details[data-type="albergue.v1.booking.reserved"]')
  await reserved.locator('summary').click()
  assert.match(await reserved.innerText(), /nights\s+integer\s+yes/)
  // the registry: each type's version, rule and mode
  assert.match(await page.locator('[data-testid=schemas] tr[data-type="albergue.v1.booking.reserved"]').innerText(), /albergue\.v1\.booking\.reserved\s+1\s+1\s+BACKWARD\s+enforce/)
  assert.deepEqual(errors, [])
})

test('an invalid publish shows up as a dead letter with its reason and errors; replay of a failed webhook delivery redelivers it, and the webhook row shows its state', { skip }, async (t) => {
  const broker = await startBroker(t, { webhooks: { defaults: { retry: { maxAttempts: 1 } } } })
  // the receiver refuses the first delivery for good (a 4xx other than 408/429), then takes everything
  const hook = await receiver(t, (n, res) => { res.writeHead(n === 1 ? 422 : 200).end() })
  const registered = await fetch(httpUrl(broker, '/api/webhooks'), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ service_id: 'notification-service', webhook_url: hook.url, topic_filters: ['albergue.v1.booking.*'] })
  })
  assert.equal(registered.status, 201)
  const { page, errors } = await openPage(t, httpUrl(broker, '/'))
  await page.locator('[data-testid=filter-status]', { hasText: 'watching' }).waitFor({ timeout: SHOWN_MS })
  const publisher = await connect(t, mqttUrl(broker), { clientId: 'booking-service' })

  // invalid: nights must be >= 1
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved({ nights: 0 })), { qos: 1 })
  const invalid = page.locator('[data-testid=dlq] tr', { hasText: 'schema_validation_failed' })
  await invalid.waitFor({ timeout: SHOWN_MS })
  assert.match(await invalid.innerText(), /\/data\/nights: must be >= 1/)
  assert.match(await invalid.innerText(), /booking-service/)
  await page.locator('[data-testid=events] li[data-outcome=rejected]', { hasText: 'schema_validation_failed' }).waitFor({ timeout: SHOWN_MS })

  // valid, but its webhook delivery fails at once: a delivery_failed dead letter
  const event = bookingReserved()
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(event), { qos: 1 })
  const failed = page.locator('[data-testid=dlq] tr', { hasText: 'delivery_failed' })
  await failed.waitFor({ timeout: SHOWN_MS })
  assert.match(await failed.innerText(), /failed \(delivery_failed\): HTTP 422/)
  const webhookRow = page.locator('[data-testid=webhooks] tr', { hasText: 'notification-service' })
  await webhookRow.locator('[data-testid=failed]', { hasText: '1' }).waitFor({ timeout: SHOWN_MS })
  assert.match(await webhookRow.locator('[data-testid=last-status]').innerText(), /^422/)
  assert.equal(await webhookRow.locator('[data-testid=breaker]').innerText(), 'closed')
  // its adaptive limit: 8, where every subscription starts (a 422 is no sign of overload, one request at a time no reason to grow)
  assert.equal(await webhookRow.locator('[data-testid=concurrency]').innerText(), '8')

  await failed.locator('[data-action=replay]').click()
  await page.locator('[data-testid=dlq-status]', { hasText: 'delivering to its webhook again' }).waitFor({ timeout: SHOWN_MS })
  const [, second] = await hook.next(2)
  assert.equal(second?.headers['ce-id'], event.id)
  // delivered: the dead letter is gone, and the webhook counts it
  await webhookRow.locator('[data-testid=delivered]', { hasText: '1' }).waitFor({ timeout: SHOWN_MS })
  assert.match(await webhookRow.locator('[data-testid=last-status]').innerText(), /^200/)
  await page.locator('#dlq-refresh').click()
  await failed.waitFor({ state: 'detached', timeout: SHOWN_MS })

  // the invalid one is deleted with its button
  await invalid.locator('[data-action=delete]').click()
  await invalid.waitFor({ state: 'detached', timeout: SHOWN_MS })
  const left = await (await fetch(httpUrl(broker, '/api/dlq'))).json() as { items: unknown[] }
  assert.equal(left.items.length, 0)
  assert.deepEqual(errors, [])
})

test('with users and API keys configured the page asks for both, then shows what they may see', { skip }, async (t) => {
  const apiKey = 'ceb_dashboard-test-key-0123456789abcdef'
  const broker = await startBroker(t, {
    auth: {
      users: [{ username: 'operator', password: await hashPassword('hostel-ops-2026'), roles: ['ops'] }],
      acl: [{ role: 'ops', publish: [], subscribe: ['$audit/#', '$DLQ/#', '$SYS/ce-broker/#'] }],
      apiKeys: [{ id: 'dashboard', key: hashApiKey(apiKey), scopes: ['read', 'admin'] }]
    }
  })
  const { page } = await openPage(t, httpUrl(broker, '/'))
  const login = page.locator('[data-testid=login]')
  await login.waitFor({ timeout: SHOWN_MS })
  // both are asked for: the API answered 401 and the broker CONNACK 5
  await login.locator('input[name=apiKey]').waitFor({ timeout: SHOWN_MS })
  await login.locator('input[name=username]').waitFor({ timeout: SHOWN_MS })
  await login.locator('input[name=apiKey]').fill(apiKey)
  await login.locator('input[name=username]').fill('operator')
  await login.locator('input[name=password]').fill('hostel-ops-2026')
  await login.locator('button[type=submit]').click()
  await page.locator('[data-testid=connection]', { hasText: 'live' }).waitFor({ timeout: SHOWN_MS })
  await page.locator('[data-testid=filter-status]', { hasText: 'watching $audit/#' }).waitFor({ timeout: SHOWN_MS })
  await page.locator('[data-testid=catalog] details[data-type="albergue.v1.booking.reserved"]').waitFor({ timeout: SHOWN_MS })
  assert.equal(await login.isHidden(), true)
})
