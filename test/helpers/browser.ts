import { chromium, type Browser, type Page } from 'playwright-core'
import type { TestContext } from 'node:test'
import { defer } from './cleanup.js'
import { commandUnavailable } from './commands.js'

/** Debian's Chromium (`apt-get install chromium`); `CHROMIUM_PATH` names another. */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

/** No GPU, no network of its own, nothing but the page under test. */
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']

/**
 * Why browser tests cannot run here, or `undefined` when they can: skipped without
 * Chromium, a failure under CI (which installs it).
 */
export function chromiumUnavailable (): string | undefined {
  return commandUnavailable({ command: CHROMIUM, versionArgs: ['--version'], aptPackage: 'chromium', tests: 'dashboard browser tests' })
}

/** A page in a headless Chromium of its own, closed after the test, with what its console said. */
export interface TestPage {
  readonly page: Page
  /** Console errors and uncaught exceptions, in order. */
  readonly errors: string[]
}

export async function openPage (t: TestContext, url: string): Promise<TestPage> {
  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS })
  defer(t, () => browser.close())
  const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } })
  const errors: string[] = []
  page.on('console', (message) => { if (message.type() === 'error') errors.push(message.text()) })
  page.on('pageerror', (err) => { errors.push(`uncaught: ${err.message}`) })
  await page.goto(url)
  return { page, errors }
}
