/**
 * The dead-letter panel's filter and its "Replay all matching" button: a dry run says
 * how many match, the operator confirms, and the job's progress is shown until it ends
 * (`POST /api/dlq/replay`, `GET /api/dlq/replay/:jobId`).
 */
import { ApiError, api } from './api.js'
import { $, h } from './dom.js'

/** A bulk redrive job as the API shows it. */
interface RedriveJob {
  id: string
  state: 'running' | 'stopped' | 'done'
  matched: number
  replayed: number
  failed: number
  skipped: number
  remaining: number
}

/** The panel's filter as `GET /api/dlq` and `POST /api/dlq/replay` take it: only what is filled in. */
export function deadLetterFilter (): { reason?: string, topic?: string } {
  const reason = $<HTMLInputElement>('dlq-reason').value.trim()
  const topic = $<HTMLInputElement>('dlq-topic').value.trim()
  return { ...(reason === '' ? {} : { reason }), ...(topic === '' ? {} : { topic }) }
}

const POLL_MS = 500

/** Wire the button; `refresh` reads the list again (with the filter) when something changed. */
export function setUpRedrive (refresh: () => Promise<void>): void {
  const status = $('redrive-status')
  const confirmation = $('redrive-confirm')
  const show = (text: string): void => { status.textContent = text }
  const fail = (err: unknown): void => {
    show(err instanceof ApiError && err.status === 403 ? 'Replaying needs an API key with the admin scope.' : err instanceof Error ? err.message : String(err))
  }

  async function follow (job: RedriveJob): Promise<void> {
    let current = job
    for (;;) {
      show(`replaying: ${current.replayed + current.failed + current.skipped} of ${current.matched} done (${current.replayed} replayed, ${current.failed} failed), ${current.remaining} remaining`)
      if (current.state !== 'running') break
      await new Promise((resolve) => setTimeout(resolve, POLL_MS))
      current = (await api<{ job: RedriveJob }>(`/api/dlq/replay/${encodeURIComponent(current.id)}`)).job
    }
    show(current.state === 'done'
      ? `redrive done: ${current.replayed} replayed, ${current.failed} failed, ${current.skipped} gone meanwhile`
      : `redrive ${current.state} with ${current.remaining} remaining (job ${current.id})`)
    await refresh()
  }

  async function start (): Promise<void> {
    confirmation.replaceChildren()
    show('starting…')
    const { job } = await api<{ job: RedriveJob }>('/api/dlq/replay', jsonPost({ filter: deadLetterFilter() }))
    await follow(job)
  }

  async function ask (): Promise<void> {
    const filter = deadLetterFilter()
    const { matched } = await api<{ matched: number }>('/api/dlq/replay', jsonPost({ filter, dryRun: true }))
    if (matched === 0) {
      show('No dead letters match the filter.')
      return
    }
    show('')
    const yes = h('button', { type: 'button', 'data-action': 'confirm-redrive' }, `Replay ${matched}`)
    const no = h('button', { type: 'button', 'data-action': 'cancel-redrive' }, 'Cancel')
    yes.addEventListener('click', () => { start().catch(fail) })
    no.addEventListener('click', () => { confirmation.replaceChildren() })
    confirmation.replaceChildren(
      h('span', { 'data-testid': 'redrive-count' }, `${matched} dead letter${matched === 1 ? '' : 's'} match${matched === 1 ? 'es' : ''}${describe(filter)}. Replay each once?`), ' ', yes, ' ', no)
  }

  $('redrive').addEventListener('click', () => { ask().catch(fail) })
  $<HTMLFormElement>('dlq-filter').addEventListener('submit', (event) => {
    event.preventDefault()
    confirmation.replaceChildren()
    refresh().catch(fail)
  })
}

function describe (filter: { reason?: string, topic?: string }): string {
  const parts = [filter.reason === undefined ? '' : `reason ${filter.reason}`, filter.topic === undefined ? '' : `topic ${filter.topic}`].filter((p) => p !== '')
  return parts.length === 0 ? '' : ` (${parts.join(', ')})`
}

function jsonPost (body: unknown): RequestInit {
  return { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }
}
