import { test } from 'node:test'
import { chaos, kill, skip } from '../helpers/chaos.js'

// the chaos tests of a node's death; Redis' own faults are in chaos-redis.test.ts (together they passed the 60 s a test file may take on a loaded machine)

test('chaos: kill -9 of the ingress node', { skip, timeout: 180_000 }, async (t) => {
  await chaos(t, async ({ ingress }) => { await kill(ingress) })
})

test('chaos: kill -9 of the ingress node, events on a topic nothing checks (not journaled)', { skip, timeout: 180_000 }, async (t) => {
  await chaos(t, async ({ ingress }) => { await kill(ingress) }, { plain: true })
})

test('chaos: kill -9 of the egress node (its subscriber moves to the other node, its deliveries are taken over)', { skip, timeout: 180_000 }, async (t) => {
  await chaos(t, async ({ egress }) => { await kill(egress) })
})
