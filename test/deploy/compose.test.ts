import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { parse } from 'yaml'
import { commandUnavailable } from '../helpers/commands.js'

// The deployment files are checked without Docker (none runs in CI): the compose file
// through `docker-compose config`, the HAProxy config through `haproxy -c`, the
// Dockerfile and the HAProxy rules by reading them.

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const composeSkip = commandUnavailable({ command: 'docker-compose', versionArgs: ['version'], aptPackage: 'docker-compose', tests: 'compose file tests' }) ?? false
const haproxySkip = commandUnavailable({ command: 'haproxy', versionArgs: ['-v'], aptPackage: 'haproxy', tests: 'HAProxy config tests' }) ?? false

function run (command: string, args: readonly string[]): { stdout: string, stderr: string } {
  const result = spawnSync(command, args, { cwd: ROOT, encoding: 'utf8', timeout: 60_000 })
  if (result.error !== undefined) throw result.error
  assert.equal(result.status, 0, `${command} ${args.join(' ')} exited ${String(result.status)}:\n${result.stderr}${result.stdout}`)
  return { stdout: result.stdout, stderr: result.stderr }
}

function record (value: unknown, where: string): Record<string, unknown> {
  assert.ok(typeof value === 'object' && value !== null && !Array.isArray(value), `${where} is not a mapping: ${JSON.stringify(value)}`)
  return Object.fromEntries(Object.entries(value))
}

/** A compose list that may also be written as one string (`command`, `healthcheck.test`). */
function words (value: unknown, where: string): string[] {
  if (typeof value === 'string') return value.split(/\s+/).filter((word) => word !== '')
  assert.ok(Array.isArray(value), `${where} is neither a string nor a list: ${JSON.stringify(value)}`)
  return value.map((item) => String(item))
}

/** The value of `--flag VALUE` or `--flag=VALUE` in an argument list. */
function flag (args: readonly string[], name: string): string | undefined {
  for (const [i, arg] of args.entries()) {
    if (arg === name) return args[i + 1]
    if (arg.startsWith(`${name}=`)) return arg.slice(name.length + 1)
  }
  return undefined
}

/** Host ports a service publishes, from both the short (`"8080:8080"`) and the long form. */
function publishedPorts (ports: unknown): Array<{ published: number, target: number }> {
  if (ports === undefined) return []
  assert.ok(Array.isArray(ports), 'ports is not a list')
  return ports.map((port: unknown) => {
    if (typeof port === 'string') {
      const match = /^(?:[^:]+:)?(\d+):(\d+)(?:\/\w+)?$/.exec(port)
      assert.ok(match !== null, `unexpected port mapping ${port}`)
      return { published: Number(match[1]), target: Number(match[2]) }
    }
    const long = record(port, 'a port mapping')
    return { published: Number(long.published), target: Number(long.target) }
  })
}

/** HAProxy sections by their header line (`backend mqtt_nodes`), each a list of directives without comments. */
function haproxySections (): Map<string, string[]> {
  const sections = new Map<string, string[]>()
  let current: string[] | undefined
  for (const raw of readFileSync(join(ROOT, 'deploy/haproxy.cfg'), 'utf8').split('\n')) {
    const line = raw.replace(/(^|\s)#.*$/, '').trimEnd()
    if (line.trim() === '') continue
    if (!/^\s/.test(line)) {
      current = []
      sections.set(line.trim().replace(/\s+/g, ' '), current)
    } else {
      assert.ok(current !== undefined, `haproxy.cfg: directive outside a section: ${line}`)
      current.push(line.trim().replace(/\s+/g, ' '))
    }
  }
  return sections
}

function section (sections: Map<string, string[]>, header: string): string[] {
  const found = sections.get(header)
  assert.ok(found !== undefined, `haproxy.cfg has no "${header}" section; it has: ${[...sections.keys()].join(', ')}`)
  return found
}

/** `server NAME HOST:PORT options...` lines of a section. */
function servers (directives: readonly string[]): Array<{ host: string, port: number, options: string[] }> {
  return directives.filter((d) => d.startsWith('server ')).map((d) => {
    const [, , address = '', ...options] = d.split(' ')
    const [host = '', port = ''] = address.split(':')
    return { host, port: Number(port), options }
  })
}

test('docker-compose.yml: Redis, two broker nodes on it with health checks, and a load balancer publishing 1883 and 8080', { skip: composeSkip }, () => {
  const config = record(parse(run('docker-compose', ['-f', 'docker-compose.yml', 'config']).stdout), 'the compose config')
  const services = record(config.services, 'services')
  for (const name of ['redis', 'broker-a', 'broker-b', 'lb']) assert.ok(name in services, `no service "${name}"; services: ${Object.keys(services).join(', ')}`)

  const redis = record(services.redis, 'services.redis')
  assert.match(String(redis.image), /^redis:7/)
  assert.equal(flag(words(redis.command, 'redis.command'), '--appendonly'), 'yes', 'Redis must keep an append-only file so a restart keeps sessions and queues')
  const data = words(redis.volumes, 'redis.volumes').find((v) => v.split(':')[1] === '/data')
  assert.ok(data !== undefined, 'Redis has no volume on /data')
  assert.ok(Object.keys(record(config.volumes, 'volumes')).includes(data.split(':')[0] ?? ''), `Redis's /data is not a named volume: ${data}`)
  assert.match(words(record(redis.healthcheck, 'redis.healthcheck').test, 'redis.healthcheck.test').join(' '), /redis-cli ping/)

  const nodeIds = new Set<string>()
  for (const name of ['broker-a', 'broker-b']) {
    const broker = record(services[name], `services.${name}`)
    assert.ok(broker.build !== undefined, `${name} is not built from the Dockerfile`)
    const args = words(broker.command, `${name}.command`)
    assert.equal(flag(args, '--host'), '0.0.0.0', `${name} must listen on every interface`)
    const redisUrl = new URL(flag(args, '--redis') ?? 'missing://')
    assert.equal(redisUrl.protocol, 'redis:', `${name} has no redis:// URL`)
    assert.ok(redisUrl.hostname in services, `${name}'s Redis host ${redisUrl.hostname} is not a service`)
    assert.equal(redisUrl.hostname, 'redis')
    const nodeId = flag(args, '--node-id')
    assert.ok(nodeId !== undefined && !nodeIds.has(nodeId), `${name} needs a node id of its own, got ${String(nodeId)}`)
    nodeIds.add(nodeId)
    const check = record(broker.healthcheck, `${name}.healthcheck`)
    assert.match(words(check.test, `${name}.healthcheck.test`).join(' '), /\/readyz/)
    assert.equal(record(record(broker.depends_on, `${name}.depends_on`).redis, `${name}.depends_on.redis`).condition, 'service_healthy')
    assert.deepEqual(publishedPorts(broker.ports), [], `${name} is reached through the load balancer only`)
  }

  const lb = record(services.lb, 'services.lb')
  const ports = publishedPorts(lb.ports)
  for (const port of [1883, 8080]) assert.ok(ports.some((p) => p.published === port && p.target === port), `lb does not publish ${port}: ${JSON.stringify(ports)}`)
  const mount = words(lb.volumes, 'lb.volumes').find((v) => v.includes('haproxy.cfg'))
  assert.ok(mount !== undefined && /\/deploy\/haproxy\.cfg:[^:]+:ro$/.test(mount), `lb must mount deploy/haproxy.cfg read-only, got ${String(mount)}`)

  // the load balancer sends traffic to exactly the broker services
  const sections = haproxySections()
  for (const backend of ['backend mqtt_nodes', 'backend http_nodes']) {
    assert.deepEqual(servers(section(sections, backend)).map((s) => s.host).sort(), ['broker-a', 'broker-b'], backend)
  }
})

test('Dockerfile: a build stage and a runtime stage with production dependencies only, run as a non-root user', () => {
  const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
  const instructions = text.replace(/\\\n/g, ' ').split('\n')
    .map((line) => line.trim()).filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => { const [keyword = '', ...rest] = line.split(/\s+/); return { keyword: keyword.toUpperCase(), args: rest.join(' ') } })
  const stages: Array<Array<{ keyword: string, args: string }>> = []
  for (const instruction of instructions) {
    if (instruction.keyword === 'FROM') stages.push([])
    stages.at(-1)?.push(instruction)
  }
  assert.ok(stages.length >= 2, `expected a multi-stage build, found ${stages.length} FROM`)
  const [build, runtime] = [stages[0] ?? [], stages.at(-1) ?? []]
  const has = (stage: typeof build, keyword: string, pattern: RegExp): boolean => stage.some((i) => i.keyword === keyword && pattern.test(i.args))
  assert.ok(has(build, 'RUN', /npm run build/), 'the first stage does not build')
  assert.ok(has(runtime, 'RUN', /npm ci\b.*--omit=dev/), 'the runtime stage must install with npm ci --omit=dev')
  assert.ok(!has(runtime, 'RUN', /npm (ci|install)(?!.*--omit=dev)/), 'the runtime stage installs dev dependencies')
  assert.ok(has(runtime, 'COPY', /--from=\S+ \S*dist/), 'the runtime stage does not take dist from the build stage')
  assert.ok(has(build, 'COPY', /^dashboard\b/) && has(runtime, 'COPY', /--from=\S+ \S*dist\/dashboard/), 'the image has no built dashboard: GET / would answer 503')
  const users = runtime.filter((i) => i.keyword === 'USER').map((i) => i.args)
  assert.ok(users.length > 0 && !/^(root|0)(:|$)/.test(users.at(-1) ?? ''), `the runtime stage must end as a non-root user, got ${JSON.stringify(users)}`)
  assert.ok(has(runtime, 'HEALTHCHECK', /\/readyz/), 'no HEALTHCHECK on /readyz')
  const bin = record(record(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')), 'package.json').bin, 'package.json bin')['ce-broker']
  assert.ok(has(runtime, 'ENTRYPOINT', new RegExp(String(bin).replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))), `ENTRYPOINT does not run ${String(bin)}`)

  // what COPY takes from the build context must exist and not be left out by .dockerignore
  const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n')
    .map((line) => line.trim()).filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => ({ negated: line.startsWith('!'), pattern: new RegExp(`^${line.replace(/^!/, '').replace(/\/$/, '').replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}(/.*)?$`) }))
  for (const copy of instructions.filter((i) => i.keyword === 'COPY' && !i.args.includes('--from='))) {
    for (const source of copy.args.split(/\s+/).slice(0, -1)) {
      assert.ok(existsSync(join(ROOT, source)), `COPY ${source}: not in the repository`)
      const excluded = ignored.reduce((out, rule) => rule.pattern.test(source) ? !rule.negated : out, false)
      assert.ok(!excluded, `COPY ${source}: .dockerignore leaves it out of the build context`)
    }
  }
})

test('deploy/haproxy.cfg: MQTT over TCP and HTTP/WebSocket go only to nodes whose /readyz answers 200', () => {
  const sections = haproxySections()
  const defaults = section(sections, 'defaults')
  const checkedByDefault = defaults.some((d) => d.startsWith('default-server ') && d.split(' ').includes('check'))

  const mqttFront = section(sections, 'frontend mqtt')
  assert.ok(mqttFront.includes('bind :1883') && mqttFront.includes('mode tcp') && mqttFront.includes('default_backend mqtt_nodes'))
  const mqtt = section(sections, 'backend mqtt_nodes')
  for (const directive of ['mode tcp', 'balance leastconn', 'option httpchk GET /readyz']) assert.ok(mqtt.includes(directive), `backend mqtt_nodes lacks "${directive}"`)
  const longTimeout = /^timeout (client|server) (\d+)(h|m)$/
  for (const [name, directives] of [['frontend mqtt', mqttFront], ['backend mqtt_nodes', mqtt]] as const) {
    const timeout = directives.map((d) => longTimeout.exec(d)).find((m) => m !== null)
    assert.ok(timeout !== undefined && timeout !== null, `${name} needs a timeout of minutes or hours: MQTT connections idle between keepalives`)
  }
  for (const server of servers(mqtt)) {
    assert.equal(server.port, 1883)
    assert.ok(checkedByDefault || server.options.includes('check'), `mqtt server ${server.host} is not health-checked`)
    assert.equal(flag(server.options, 'port'), '8080', `mqtt server ${server.host} must be checked on the HTTP port, where /readyz is`)
  }

  const httpFront = section(sections, 'frontend http')
  assert.ok(httpFront.includes('bind :8080') && httpFront.includes('mode http') && httpFront.includes('default_backend http_nodes'))
  const http = section(sections, 'backend http_nodes')
  for (const directive of ['mode http', 'option httpchk GET /readyz']) assert.ok(http.includes(directive), `backend http_nodes lacks "${directive}"`)
  assert.ok(http.some((d) => /^timeout tunnel \d+(h|m)$/.test(d)), 'backend http_nodes needs a long timeout tunnel for MQTT over WebSocket')
  for (const server of servers(http)) {
    assert.equal(server.port, 8080)
    assert.ok(checkedByDefault || server.options.includes('check'), `http server ${server.host} is not health-checked`)
  }
})

test('deploy/haproxy.cfg passes haproxy -c (node names are resolved at run time)', { skip: haproxySkip }, () => {
  const { stdout } = run('haproxy', ['-c', '-f', 'deploy/haproxy.cfg'])
  assert.match(stdout, /Configuration file is valid/)
})
