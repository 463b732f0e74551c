import type { ChildProcess } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { defer } from './cleanup.js'
import { commandUnavailable } from './commands.js'
import { freePort } from './net.js'
import { redisUnavailable, spawnUntil } from './redis.js'

export const MASTER_NAME = 'albergue'

/** A master, its replicas and the Sentinels watching them, each a real process on a free port. */
export interface SentinelGroup {
  /** `redis+sentinel://…/albergue`, as a node is given it. */
  readonly url: string
  /** SIGKILL the current master, as a crash would. */
  readonly killMaster: () => Promise<void>
  /** The port of the master the Sentinels name now. */
  readonly masterPort: () => Promise<number>
  /** Block every replica for `ms` (`DEBUG SLEEP`): they read nothing of the master's writes meanwhile. Resolves once they sleep. */
  readonly stallReplicas: (ms: number) => Promise<void>
}

/** Why the Sentinel tests cannot run here, or `undefined` (skipped with the reason, a failure under CI). */
export function sentinelUnavailable (): string | undefined {
  if (process.env.REDIS_URL !== undefined) return 'an external REDIS_URL server cannot be failed over'
  return redisUnavailable() ?? commandUnavailable({ command: 'redis-sentinel', versionArgs: ['--version'], aptPackage: 'redis-sentinel', tests: 'Redis Sentinel tests' })
}

/**
 * Spawn a master, `replicas` replicas of it and three Sentinels (quorum 2) that declare
 * it down after 1 s; resolve once every Sentinel knows every replica and the other two
 * Sentinels, so a failover can happen. Everything is killed after the test.
 */
export async function startSentinelGroup (t: TestContext, replicas = 2): Promise<SentinelGroup> {
  const dir = await mkdtemp(join(tmpdir(), 'ce-broker-sentinel-'))
  const children = new Map<number, ChildProcess>()
  defer(t, async () => {
    // SIGKILL: nothing to keep, and a master shutting down on SIGTERM waits for its replicas
    await Promise.all([...children.values()].map(async (child) => { await stop(child) }))
    await rm(dir, { recursive: true, force: true })
  })
  const server = async (extra: readonly string[]): Promise<number> => {
    const port = await freePort()
    // in the temporary folder: a replica's full sync writes a dump.rdb where it runs
    children.set(port, await spawnUntil('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--dbfilename', `dump-${port}.rdb`, ...extra], 'Ready to accept connections'))
    return port
  }
  const master = await server([])
  const replicaPorts: number[] = []
  for (let i = 0; i < replicas; i++) replicaPorts.push(await server(['--replicaof', '127.0.0.1', String(master), '--enable-debug-command', 'yes']))
  const sentinels: number[] = []
  for (let i = 0; i < 3; i++) {
    const port = await freePort()
    // a Sentinel rewrites its configuration file: each gets its own, in the temporary folder
    const file = join(dir, `sentinel-${port}.conf`)
    await writeFile(file, [
      `port ${port}`,
      'bind 127.0.0.1',
      `dir ${dir}`,
      `sentinel monitor ${MASTER_NAME} 127.0.0.1 ${master} 2`,
      `sentinel down-after-milliseconds ${MASTER_NAME} 1000`,
      `sentinel failover-timeout ${MASTER_NAME} 10000`,
      ''
    ].join('\n'))
    children.set(port, await spawnUntil('redis-sentinel', [file], '+monitor master'))
    sentinels.push(port)
  }
  const ask = async <T>(port: number, command: (redis: Redis) => Promise<T>): Promise<T> => {
    const redis = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 1 })
    try {
      await redis.connect()
      return await command(redis)
    } finally {
      redis.disconnect()
    }
  }
  const count = async (port: number, what: 'replicas' | 'sentinels'): Promise<number> => {
    const reply: unknown = await ask(port, async (redis) => await redis.call('SENTINEL', what, MASTER_NAME))
    return Array.isArray(reply) ? reply.length : 0
  }
  for (let i = 0; ; i++) {
    let known = true
    for (const port of sentinels) known &&= await count(port, 'replicas') === replicas && await count(port, 'sentinels') === 2
    if (known) break
    if (i === 300) throw new Error('the Sentinels did not find each other and the replicas within 30 s')
    await sleep(100)
  }
  const masterPort = async (): Promise<number> => {
    const reply: unknown = await ask(sentinels[0] ?? 0, async (redis) => await redis.call('SENTINEL', 'get-master-addr-by-name', MASTER_NAME))
    return Array.isArray(reply) ? Number(reply[1]) : 0
  }
  return {
    url: `redis+sentinel://${sentinels.map((port) => `127.0.0.1:${port}`).join(',')}/${MASTER_NAME}`,
    masterPort,
    stallReplicas: async (ms) => {
      for (const port of replicaPorts) {
        const redis = new Redis({ port, host: '127.0.0.1' })
        redis.on('error', () => { /* the group is torn down after the test */ })
        // answered once it wakes up
        void redis.call('DEBUG', 'SLEEP', String(ms / 1000)).finally(() => { redis.disconnect() })
      }
      // the replicas are asleep once they no longer answer a PING
      for (const port of replicaPorts) {
        for (;;) {
          const probe = new Redis({ port, host: '127.0.0.1', lazyConnect: true })
          probe.on('error', () => {})
          const answered = await Promise.race([probe.connect().then(async () => await probe.ping()), sleep(200).then(() => undefined)])
          probe.disconnect()
          if (answered === undefined) break
        }
      }
    },
    killMaster: async () => {
      const port = await masterPort()
      const child = children.get(port)
      if (child === undefined) throw new Error(`no process of this group listens on the master's port ${port}`)
      await stop(child)
    }
  }
}

async function stop (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((resolve) => { child.once('exit', resolve) })
  child.kill('SIGKILL')
  await exited
}
