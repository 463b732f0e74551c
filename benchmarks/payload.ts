/**
 * The event the benchmark publishes: a structured-mode CloudEvents 1.0 JSON
 * envelope, as ce-broker's clients send it (aedes speaks MQTT 3.1.1, so no
 * binary mode). Fixed values: every PUBLISH is identical, so it is encoded once;
 * with unique ids (`unique-ids.ts`) only the digits of `id` change, in place.
 */

/** The `id` of every event unless the load asks for unique ids: 36 ASCII characters, UUID-shaped. */
export const EVENT_ID = '0b6f8e2a-4c1d-4f7e-9a3b-5d2c8e1f7a64'

/** What a pilgrim typed into the booking form; ASCII only, so characters equal bytes. */
const NOTES = 'Arriving on foot from Sarria, expected around 15:30 unless the weather turns. ' +
  'Travelling with one companion who booked separately under the same surname; we would like bunks next to each other if possible. ' +
  'Please give me a lower bunk: I hurt my knee on the descent to Portomarin and climbing is painful. ' +
  'Vegetarian, no fish; we would like to join the communal dinner if places remain and can pay at the desk. ' +
  'Will need to wash and dry clothes, does the machine take coins or tokens? ' +
  'Credencial already stamped in Portomarin and Palas de Rei. ' +
  'We plan to leave before 7:00, so please send the door code with the confirmation. ' +
  'WhatsApp preferred, Spanish or English. Thank you and buen camino. '

/**
 * A CloudEvent of `type` `albergue.v1.booking.reserved` with `id`, exactly `bytes`
 * long once serialized: `data.notes` is cut to fill the space the other fields leave,
 * so an `id` of another length, or extension attributes, change the notes, not the size.
 * `extensions` are CloudEvents extension attributes (names `[a-z0-9]{1,20}`), put in
 * the envelope before `data`: the bundled schema covers `data` only and allows no
 * extra field there. Throws when `bytes` is too small to hold the fields without notes.
 */
export function bookingReservedEvent (bytes: number, id: string = EVENT_ID, extensions: Readonly<Record<string, string>> = {}): Buffer {
  const build = (notes: string): string => JSON.stringify({
    specversion: '1.0',
    id,
    source: '/albergue/santiago/reservations',
    type: 'albergue.v1.booking.reserved',
    subject: 'booking/bk_01HZX4T9Q2M7R8V3K5N6P0W1YB',
    time: '2025-06-14T09:31:07.412Z',
    datacontenttype: 'application/json',
    ...extensions,
    data: {
      booking_id: 'bk_01HZX4T9Q2M7R8V3K5N6P0W1YB',
      pilgrim_id: 'pl_01HZX3M2C8F4J6K9P1R5T7V0XA',
      check_in_date: '2025-06-20',
      check_out_date: '2025-06-22',
      nights: 2,
      total_amount: 36.5,
      expires_at: '2025-06-14T09:46:07.412Z',
      notes
    }
  })
  const room = bytes - Buffer.byteLength(build(''))
  if (room < 0) throw new RangeError(`a booking event needs at least ${bytes - room} bytes, asked for ${bytes}`)
  const notes = NOTES.repeat(Math.ceil(room / NOTES.length)).slice(0, room)
  const json = Buffer.from(build(notes))
  // NOTES needs no JSON escaping, so the length is exact; check rather than trust that
  if (json.length !== bytes) throw new RangeError(`booking event came out ${json.length} bytes, expected ${bytes}`)
  return json
}
