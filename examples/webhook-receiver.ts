/**
 * A notification service receiving booking events as signed webhooks: verified, typed,
 * and run once per event even when the broker delivers one again.
 *
 *   PORT=3000 WEBHOOK_SECRET=… BROKER_HTTP_URL=http://127.0.0.1:8080 node --import tsx examples/webhook-receiver.ts
 *
 * With BROKER_HTTP_URL it subscribes itself (`POST /api/webhooks`; add BROKER_API_KEY
 * when the broker asks for one).
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createWebhookHandler, memoryProcessedStore } from 'ce-broker/client'
import type { Events } from './events.js'

const secret = process.env.WEBHOOK_SECRET ?? 'change-me-to-a-long-secret'

const handler = createWebhookHandler<Events>({ secret, store: memoryProcessedStore() })
  .on('albergue.v1.booking.reserved', async (event) => {
    console.log(`booking ${event.data.booking_id} reserved for ${event.data.nights} night(s)`)
  })
  .on('albergue.v1.booking.cancelled', async (event) => {
    console.log(`booking ${event.data.booking_id} cancelled`)
  })

const server = createServer(handler.listener)
server.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`
  console.log(`listening on ${url}`)
  const broker = process.env.BROKER_HTTP_URL
  if (broker === undefined) return
  const apiKey = process.env.BROKER_API_KEY
  fetch(`${broker}/api/webhooks`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(apiKey === undefined ? {} : { authorization: `Bearer ${apiKey}` }) },
    body: JSON.stringify({ service_id: 'notification', webhook_url: url, topic_filters: ['albergue.v1.booking.*'], secret })
  }).then(async (reply) => { console.log(`subscribed: ${reply.status}`) }, (err: unknown) => { console.error('could not subscribe', err) })
})
process.on('SIGTERM', () => { server.close() })
