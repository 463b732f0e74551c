import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Redis } from 'ioredis'
import { chaos, skip } from '../helpers/chaos.js'

// the chaos tests of Redis' faults; a node's death is in chaos-nodes.test.ts

test('chaos: Redis restarted (append-only file, fsync always)', { skip, timeout: 180_000 }, async (t) => {
  await chaos(t, async ({ redis }) => { await redis.restart() }, { persistent: true })
})

test('chaos: every Redis connection of the egress node killed (CLIENT KILL)', { skip, timeout: 180_000 }, async (t) => {
  await chaos(t, async ({ redis, egress }) => {
    const admin = new Redis(redis.url)
    try {
      const list = await admin.client('LIST') as string
      const ids = [...list.matchAll(/^id=(\d+) .* name=(\S*)/gm)].filter((m) => m[2]?.startsWith(`ce-broker:${egress.id}:`) === true).map((m) => m[1] ?? '')
      assert.ok(ids.length >= 4, `the egress node's connections are named: ${ids.length}`)
      for (const id of ids) await admin.client('KILL', 'ID', id)
    } finally {
      admin.disconnect()
    }
  })
})
