/** The HTTP API, with the credentials the page asks for only when the broker wants them. */
import { $ } from './dom.js'

export const credentials = {
  apiKey: sessionStorage.getItem('ce-broker.apiKey') ?? '',
  username: sessionStorage.getItem('ce-broker.username') ?? '',
  password: sessionStorage.getItem('ce-broker.password') ?? ''
}
/** What the sign-in form asks for: what the broker has refused so far. */
const needs = { apiKey: false, mqtt: false }

export function askForCredentials (what: 'apiKey' | 'mqtt', why: string): void {
  needs[what] = true
  const form = $<HTMLFormElement>('login')
  $('login-reason').textContent = why
  for (const label of form.querySelectorAll<HTMLElement>('label[data-field]')) {
    label.hidden = !needs[label.dataset.field as 'apiKey' | 'mqtt']
  }
  form.hidden = false
}

export class ApiError extends Error {
  constructor (readonly status: number, message: string) { super(message) }
}

export async function api<T> (path: string, init: RequestInit = {}, accept = 'application/json'): Promise<T> {
  const headers = new Headers(init.headers)
  headers.set('accept', accept)
  if (credentials.apiKey !== '') headers.set('authorization', `Bearer ${credentials.apiKey}`)
  const response = await fetch(path, { ...init, headers })
  if (response.status === 401) askForCredentials('apiKey', 'The HTTP API needs an API key with the read scope (admin to replay or delete dead letters).')
  if (!response.ok) {
    const body = await response.json().catch(() => undefined) as { error?: { message?: string } } | undefined
    throw new ApiError(response.status, body?.error?.message ?? `${init.method ?? 'GET'} ${path} answered ${response.status}`)
  }
  if (response.status === 204) return undefined as T
  return (accept === 'application/json' ? await response.json() : await response.text()) as T
}


/** Keep what the sign-in form was asked for (for this tab's session) and hide the form. */
export function saveCredentials (form: FormData): void {
  const value = (name: string): string => String(form.get(name) ?? '')
  if (needs.apiKey) credentials.apiKey = value('apiKey')
  if (needs.mqtt) {
    credentials.username = value('username')
    credentials.password = value('password')
  }
  for (const [name, secret] of Object.entries(credentials)) sessionStorage.setItem(`ce-broker.${name}`, secret)
  $('login').hidden = true
  needs.apiKey = false
  needs.mqtt = false
}
