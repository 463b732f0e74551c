import { Type } from '@sinclair/typebox'
import { configSection, setting } from '../../src/core/index.js'

/** The audit trail: a record for every publish on a validated topic. */
export const auditSection = configSection({
  key: 'audit',
  schema: Type.Object({
    enabled: Type.Boolean({
      default: true,
      ...setting({ env: 'CE_BROKER_AUDIT_ENABLED', doc: 'an audit record for every publish on a validated topic, on `$audit/<topic>` and in the audit logs' })
    }),
    topic: Type.Boolean({
      default: true,
      ...setting({
        env: 'CE_BROKER_AUDIT_TOPIC',
        doc: 'publish each record on `$audit/<topic>`, the live mirror (a message through the broker per event while anybody subscribes to `$audit/…`); the logs are written either way'
      })
    }),
    // absent: no file
    file: Type.Optional(Type.String({
      minLength: 1,
      ...setting({ env: 'CE_BROKER_AUDIT_FILE', flag: '--audit-file', flagArg: 'FILE', doc: 'JSON-lines file the audit records are appended to (opened at start-up)' })
    })),
    payload: Type.Boolean({
      default: true,
      ...setting({ env: 'CE_BROKER_AUDIT_PAYLOAD', doc: 'put the event itself in each audit record' })
    }),
    redact: Type.Array(Type.String({ pattern: '^[^.]+(\\.[^.]+)*$' }), {
      default: [],
      ...setting({ doc: 'paths into the event (`data.email`, `data.guests.*.email`) whose values become `"[redacted]"` in every audit record' })
    }),
    // with Redis: the stream records are added to
    stream: Type.Object({
      key: Type.String({
        minLength: 1,
        default: 'ce-broker:audit',
        ...setting({ env: 'CE_BROKER_AUDIT_STREAM_KEY', doc: 'with Redis: the stream audit records are added to' })
      }),
      maxLen: Type.Integer({
        minimum: 1,
        default: 1_000_000,
        ...setting({ env: 'CE_BROKER_AUDIT_STREAM_MAX_LEN', doc: 'with Redis: the stream is trimmed to about this many entries (`XADD MAXLEN ~`)' })
      })
    }, { additionalProperties: false }),
    // embedded: what GET /api/mqtt/messages/:topic reads (with Redis the stream is read)
    recent: Type.Object({
      maxEntries: Type.Integer({
        minimum: 1,
        default: 1000,
        ...setting({
          env: 'CE_BROKER_AUDIT_RECENT_MAX_ENTRIES',
          doc: 'embedded: accepted events each node keeps in memory for `GET /api/mqtt/messages/:topic`; with Redis the audit stream is read instead'
        })
      }),
      maxBytes: Type.Integer({
        minimum: 1024,
        default: 16 * 1024 * 1024,
        ...setting({
          env: 'CE_BROKER_AUDIT_RECENT_MAX_BYTES',
          defaultNote: '16 MiB',
          doc: 'embedded: the bytes of those records (they carry the payload); the oldest go first beyond it. A page of the route stops at 4 MiB, `next` saying where'
        })
      })
    }, { additionalProperties: false })
  }, { additionalProperties: false })
})
