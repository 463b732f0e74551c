import { randomUUID } from 'node:crypto'

/** A valid `albergue.v1.booking.reserved` event; `overrides` replace envelope attributes, `data` fields of data. */
export function bookingReserved (data: Record<string, unknown> = {}, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    specversion: '1.0',
    id: randomUUID(),
    source: '/albergue/booking-service',
    type: 'albergue.v1.booking.reserved',
    time: '2026-11-23T10:00:00Z',
    datacontenttype: 'application/json',
    data: {
      booking_id: 'b-1001',
      pilgrim_id: 'p-2002',
      check_in_date: '2026-05-01',
      check_out_date: '2026-05-02',
      nights: 1,
      total_amount: 12.5,
      expires_at: '2026-04-30T20:00:00Z',
      ...data
    },
    ...overrides
  }
}

export const BOOKING_RESERVED_TOPIC = 'albergue/v1/booking/reserved'

/** The `data` of a dead-letter record, as tests read it. */
export interface RecordData {
  reason: string
  errors: Array<{ path: string, message: string }>
  topic: string
  clientId: string | null
  payload?: unknown
  payloadBase64?: string
  /** Reason `delivery_failed` only. */
  attempts?: number
  lastStatus?: number
  subscription?: string
}

/** Parse a dead-letter record from a message payload. */
export function parseRecord (payload: Buffer): { specversion: string, type: string, source: string, id: string, time: string, datacontenttype: string, data: RecordData } {
  return JSON.parse(payload.toString())
}
