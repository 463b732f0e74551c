import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import type { FastifyPluginAsync } from 'fastify'
import { errorBody } from '../errors.js'

/** The dashboard's files, read once at start-up: a page, its script and its styles. */
const ASSETS = [
  { path: '/', file: 'index.html', type: 'text/html; charset=utf-8' },
  { path: '/dashboard/app.js', file: 'app.js', type: 'text/javascript; charset=utf-8' },
  { path: '/dashboard/app.css', file: 'app.css', type: 'text/css; charset=utf-8' }
] as const

/**
 * Same origin only; the page talks MQTT over this origin's WebSocket. mqtt.js runs its
 * keepalive timers in a worker made from a blob (timers of a background tab are
 * throttled, a worker's are not); uPlot sizes its elements through `style`.
 */
const CONTENT_SECURITY_POLICY = "default-src 'self'; connect-src 'self'; worker-src 'self' blob:; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'"

/**
 * `GET /`: the live dashboard, built by `npm run build` into `dist/dashboard/` and
 * served from memory. The files hold no data: the page asks for an API key and MQTT
 * credentials when the broker wants them, so they are public. Without a build, `/`
 * answers 503 saying how to build it.
 */
export const dashboardRoutes: FastifyPluginAsync<{ readonly dir: string | undefined }> = async function dashboardRoutes (app, { dir }) {
  for (const asset of ASSETS) {
    const body = dir === undefined ? undefined : readAsset(join(dir, asset.file))
    // compressed once here (the script is 400 KB, 130 KB gzipped); revalidated by ETag
    const gzipped = body === undefined ? undefined : gzipSync(body, { level: 9 })
    const etag = body === undefined ? undefined : `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`
    app.get(asset.path, async (req, reply) => {
      if (body === undefined || gzipped === undefined || etag === undefined) return await reply.code(503).send(errorBody('not_built', 'the dashboard is not built: run npm run build'))
      void reply
        .type(asset.type)
        .header('cache-control', 'no-cache')
        .header('etag', etag)
        .header('vary', 'accept-encoding')
        .header('content-security-policy', CONTENT_SECURITY_POLICY)
        .header('x-content-type-options', 'nosniff')
      if (req.headers['if-none-match'] === etag) return await reply.code(304).send()
      if (/\bgzip\b/.test(req.headers['accept-encoding'] ?? '')) return await reply.header('content-encoding', 'gzip').send(gzipped)
      return await reply.send(body)
    })
  }
}

/** A built file, or `undefined` when it is not there (a build cut short): the route says so, start-up goes on. */
function readAsset (path: string): Buffer | undefined {
  try {
    return readFileSync(path)
  } catch {
    return undefined
  }
}
