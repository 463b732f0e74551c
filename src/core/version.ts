import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

/**
 * This package's version, read from its package.json, which sits three folders up
 * from the built file (dist/src/core/) and two up from the source (src/core/).
 */
export function packageVersion (): string {
  for (const relative of ['../../package.json', '../../../package.json']) {
    try {
      const pkg: unknown = JSON.parse(readFileSync(new URL(relative, import.meta.url), 'utf8'))
      if (typeof pkg === 'object' && pkg !== null && 'name' in pkg && pkg.name === 'ce-broker' && 'version' in pkg && typeof pkg.version === 'string') {
        return pkg.version
      }
    } catch {
      // not there: try the next candidate
    }
  }
  return '0.0.0'
}

/** The `schemas/` folder shipped with this package (beside `src/`, or beside `dist/`). */
export function bundledSchemasDir (): string | undefined {
  for (const relative of ['../../schemas/', '../../../schemas/']) {
    const url = new URL(relative, import.meta.url)
    if (existsSync(new URL('albergue.v1.booking.reserved.json', url))) return fileURLToPath(url)
  }
  return undefined
}

/**
 * The built dashboard (`npm run build` writes it to `dist/dashboard/`), seen from the
 * source (src/core/ → ../../dist/dashboard/) or the build (dist/src/core/ → ../../dashboard/). Known by
 * its bundle: the sources in dashboard/ have an index.html too.
 */
export function dashboardDir (): string | undefined {
  for (const relative of ['../../dist/dashboard/', '../../dashboard/']) {
    const url = new URL(relative, import.meta.url)
    if (existsSync(new URL('app.js', url)) && existsSync(new URL('index.html', url))) return fileURLToPath(url)
  }
  return undefined
}
