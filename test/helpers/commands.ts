import { spawnSync } from 'node:child_process'

/** A tool some tests run, and how to ask it whether it is there. */
export interface ToolSpec {
  /** The executable looked up on the PATH, e.g. `redis-server`. */
  readonly command: string
  /** Arguments that make it print its version and exit 0. */
  readonly versionArgs: readonly string[]
  /** The Debian package that installs it, named in the skip reason. */
  readonly aptPackage: string
  /** What is skipped without it, e.g. `Redis tests`. */
  readonly tests: string
}

/**
 * Why tests that need `spec.command` cannot run here, or `undefined` when they can.
 * Without it on the PATH they are skipped with this reason, except under CI (`CI`
 * set, not empty, not `false`), where a missing tool is a failure: CI installs it.
 */
export function commandUnavailable (spec: ToolSpec): string | undefined {
  const probe = spawnSync(spec.command, spec.versionArgs, { stdio: 'ignore' })
  if (probe.error === undefined && probe.status === 0) return undefined
  if (process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false') {
    throw new Error(`CI is set but ${spec.command} is not on the PATH: .ci/run must install it`)
  }
  return `${spec.command} is not installed (apt-get install ${spec.aptPackage}); ${spec.tests} skipped`
}
