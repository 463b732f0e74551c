import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { before, test } from 'node:test'
import { buildDashboard } from '../../scripts/build-dashboard.js'
import { chromiumUnavailable, openPage } from '../helpers/browser.js'
import { collectMessages, connect, httpUrl, mqttUrl, startBroker } from '../helpers/broker.js'
import { BOOKING_RESERVED_TOPIC, bookingReserved, type RecordData } from '../helpers/events.js'

const skip = chromiumUnavailable() ?? false
/** Long enough for a loaded machine; the page shows things within a second or two. */
const SHOWN_MS = 15_000
const TOUR = 'albergue.v1.tour.booked'

// the broker serves what `npm run build` wrote; build it as that would
before(async () => { await buildDashboard() })

test('"Replay all matching" redrives the dead letters of the panel\'s filter: it shows the count, asks, and shows the progress until done', { skip }, async (t) => {
  const broker = await startBroker(t, { deadLetters: { replayRatePerSecond: 5 } })
  const publisher = await connect(t, mqttUrl(broker), { clientId: 'tour-service' })
  // a type with no schema yet: unknown_type; the third will fail the schema registered below
  const tours = [3, 2, 0].map((seats) => ({ specversion: '1.0', id: randomUUID(), source: '/tours', type: TOUR, data: { seats } }))
  for (const tour of tours) await publisher.publishAsync('albergue/v1/tour/booked', JSON.stringify(tour), { qos: 1 })
  await publisher.publishAsync(BOOKING_RESERVED_TOPIC, JSON.stringify(bookingReserved({ nights: 0 })), { qos: 1 })
  const schema = { type: 'object', required: ['seats'], properties: { seats: { type: 'integer', minimum: 1 } } }
  const registered = await fetch(httpUrl(broker, `/api/schemas/${TOUR}/versions`), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(schema) })
  assert.equal(registered.status, 201)
  const watcher = await connect(t, mqttUrl(broker))
  await watcher.subscribeAsync('albergue/v1/tour/booked', { qos: 1 })
  const arrived = collectMessages(watcher, 2, SHOWN_MS)

  const { page, errors } = await openPage(t, httpUrl(broker, '/'))
  await page.locator('[data-testid=dlq] tr', { hasText: 'schema_validation_failed' }).waitFor({ timeout: SHOWN_MS })
  await page.locator('[data-testid=dlq-reason]').fill('unknown_type')
  await page.locator('[data-testid=dlq-topic]').fill('albergue.v1.tour.*')
  await page.locator('#dlq-filter button[type=submit]').click()
  // the list follows the filter
  await page.locator('[data-testid=dlq] tr', { hasText: 'schema_validation_failed' }).waitFor({ state: 'detached', timeout: SHOWN_MS })
  assert.equal(await page.locator('[data-testid=dlq] tr', { hasText: 'unknown_type' }).count(), 3)

  await page.locator('[data-testid=redrive]').click()
  await page.locator('[data-testid=redrive-count]', { hasText: '3 dead letters match (reason unknown_type, topic albergue.v1.tour.*)' }).waitFor({ timeout: SHOWN_MS })
  await page.locator('[data-action=confirm-redrive]').click()
  await page.locator('[data-testid=redrive-status]', { hasText: 'remaining' }).waitFor({ timeout: SHOWN_MS })
  await page.locator('[data-testid=redrive-status]', { hasText: 'redrive done: 2 replayed, 1 failed' }).waitFor({ timeout: SHOWN_MS })
  assert.deepEqual(new Set((await arrived).map((m) => (JSON.parse(m.payload.toString()) as { id: string }).id)), new Set([tours[0]?.id, tours[1]?.id]))
  // the panel read the list again: nothing of the filter is left
  await page.locator('[data-testid=dlq] tr', { hasText: 'unknown_type' }).waitFor({ state: 'detached', timeout: SHOWN_MS })

  const left = await (await fetch(httpUrl(broker, '/api/dlq'))).json() as { items: Array<{ record: { data: RecordData } }> }
  assert.deepEqual(left.items.map((i) => i.record.data.reason).sort(), ['schema_validation_failed', 'schema_validation_failed'], 'the refused tour, with its new reason, and the booking the filter left out')
  assert.deepEqual(errors, [])
})
