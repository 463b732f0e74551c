/**
 * `npm run screenshot`: the README's picture of the dashboard (docs/dashboard.png).
 * Starts a broker with a webhook to a receiver of its own, plays a minute of albergue
 * traffic (bookings, payments, a few invalid events, duplicates, a webhook endpoint
 * that fails now and then), and photographs the page in Debian's Chromium.
 */
import { randomUUID } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import mqtt from 'mqtt'
import { chromium } from 'playwright-core'
import { createBroker } from '../src/index.js'
import { buildDashboard } from './build-dashboard.js'

const SECONDS = Number(process.env.SCREENSHOT_SECONDS ?? 60)
const root = join(import.meta.dirname, '..')
await buildDashboard(root)

let requests = 0
const hooks = createServer((req, res) => {
  req.resume()
  // every 25th delivery is refused for good: a dead letter to replay
  req.on('end', () => { res.writeHead(++requests % 25 === 0 ? 422 : 200).end() })
})
await new Promise<void>((resolve) => { hooks.listen(0, '127.0.0.1', resolve) })
const hookUrl = `http://127.0.0.1:${(hooks.address() as AddressInfo).port}/hooks`

const broker = await createBroker({ logLevel: 'warn', mqtt: { port: 0 }, http: { port: 0 }, webhooks: { defaults: { retry: { maxAttempts: 1 } } } })
const http = `http://127.0.0.1:${broker.ports.http}`
for (const [service, filter] of [['notification-service', 'albergue.v1.booking.*'], ['government-submission', 'albergue.v1.pilgrim.*']] as const) {
  await fetch(`${http}/api/webhooks`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ service_id: service, webhook_url: hookUrl, topic_filters: [filter] }) })
}
const subscriber = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.ports.mqtt}`, { clientId: 'bed-board' })
await subscriber.subscribeAsync('albergue/v1/booking/#', { qos: 1 })

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] })
const page = await browser.newPage({ viewport: { width: 1400, height: 1250 } })
await page.goto(`${http}/`)

const services = await Promise.all(['booking-service', 'payment-service', 'registration-service'].map(async (clientId) => await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.ports.mqtt}`, { clientId })))
const [booking, payment, registration] = services as [mqtt.MqttClient, mqtt.MqttClient, mqtt.MqttClient]

function event (type: string, source: string, data: Record<string, unknown>): Record<string, unknown> {
  return { specversion: '1.0', id: randomUUID(), source, type, time: new Date().toISOString(), datacontenttype: 'application/json', data }
}
const reserved = (n: number): Record<string, unknown> => event('albergue.v1.booking.reserved', '/albergue/booking-service', {
  booking_id: `b-${n}`, pilgrim_id: `p-${n}`, check_in_date: '2027-05-01', check_out_date: '2027-05-02', nights: n % 230 === 0 ? 0 : 1, total_amount: 15, expires_at: '2027-04-30T20:00:00Z'
})

const started = Date.now()
for (let n = 1; Date.now() - started < SECONDS * 1000; n++) {
  // a busy afternoon at the albergue, a little more each second
  const burst = 2 + Math.round(3 * Math.sin(n / 40) ** 2)
  for (let i = 0; i < burst; i++) {
    const booked = reserved(n * 10 + i)
    await booking.publishAsync('albergue/v1/booking/reserved', JSON.stringify(booked), { qos: 1 })
    if (i === 0 && n % 15 === 0) await booking.publishAsync('albergue/v1/booking/reserved', JSON.stringify(booked), { qos: 1 })
  }
  await payment.publishAsync('albergue/v1/payment/completed', JSON.stringify(event('albergue.v1.payment.completed', '/albergue/payment-service', { payment_id: `pay-${n}`, booking_id: `b-${n * 10}`, amount: 15, currency: 'EUR', completed_at: new Date().toISOString() })), { qos: 1 })
  if (n % 4 === 0) {
    await registration.publishAsync('albergue/v1/pilgrim/registered', JSON.stringify(event('albergue.v1.pilgrim.registered', '/albergue/registration-service', { pilgrim_id: `p-${n}`, registered_at: new Date().toISOString(), first_name: 'Ana', last_name: 'Souto', nationality: 'ES', document_type: 'dni', document_number: `1234567${n % 10}Z`, birth_date: '1990-04-12' })), { qos: 1 })
  }
  await new Promise((resolve) => setTimeout(resolve, 250))
}

await page.locator('#dlq-refresh').click()
await page.locator('[data-testid=events] li[data-outcome=rejected] summary').first().click()
await page.locator('[data-testid=catalog] details[data-type="albergue.v1.booking.reserved"] summary').click()
await page.waitForTimeout(2500)
const path = join(root, 'docs', 'dashboard.png')
await page.screenshot({ path, fullPage: true })
console.log(`wrote ${path}`)

await browser.close()
await Promise.all([...services, subscriber].map(async (client) => { await client.endAsync() }))
await broker.close()
hooks.close()
