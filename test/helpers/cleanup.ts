import type { TestContext } from 'node:test'

const stacks = new WeakMap<TestContext, Array<() => unknown>>()

/**
 * Run `fn` after the test, last registered first (node's `t.after` runs hooks in
 * registration order, which would stop a Redis before the brokers that use it).
 */
export function defer (t: TestContext, fn: () => unknown): void {
  let stack = stacks.get(t)
  if (stack === undefined) {
    const created: Array<() => unknown> = []
    stack = created
    stacks.set(t, created)
    t.after(async () => {
      for (let next = created.pop(); next !== undefined; next = created.pop()) await next()
    })
  }
  stack.push(fn)
}
