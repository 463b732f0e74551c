/**
 * A booking service publishing through ce-broker: typed events (`ce-broker types --out
 * examples/events.ts`), and `publish` resolving once the broker accepted each one.
 *
 *   BROKER_URL=mqtt://127.0.0.1:1883 node --import tsx examples/publisher.ts
 */
import { createPublisher, EventRejectedError } from 'ce-broker/client'
import { dataschemas, type Events } from './events.js'

const publisher = await createPublisher<Events>({
  url: process.env.BROKER_URL ?? 'mqtt://127.0.0.1:1883',
  clientId: process.env.CLIENT_ID ?? 'booking-service',
  source: '/albergue/booking-service',
  dataschemas
})

const reservation: Events['albergue.v1.booking.reserved'] = {
  booking_id: 'b-1001',
  pilgrim_id: 'p-2002',
  check_in_date: '2026-05-01',
  check_out_date: '2026-05-02',
  nights: 1,
  total_amount: 12.5,
  expires_at: '2026-04-30T20:00:00Z'
}

try {
  const accepted = await publisher.publish('albergue.v1.booking.reserved', reservation, { subject: reservation.booking_id })
  console.log(`accepted ${accepted.id}`)
  // the same id again: the broker's idempotency says it has it already
  const again = await publisher.publish('albergue.v1.booking.reserved', reservation, { id: accepted.id })
  console.log(`published again: duplicate=${String(again.duplicate)}`)
  // valid TypeScript, refused by the schema (nights >= 1): the broker's reason, over MQTT 3.1.1
  await publisher.publish('albergue.v1.booking.reserved', { ...reservation, nights: 0 })
} catch (err: unknown) {
  if (!(err instanceof EventRejectedError)) throw err
  console.log(`rejected: ${err.reason} ${err.errors.map((e) => `${e.path} ${e.message}`).join('; ')}`)
} finally {
  await publisher.close()
}
