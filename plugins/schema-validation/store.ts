import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { AnySchemaObject } from 'ajv'
import { SchemaFileError } from '../../src/core/index.js'
import type { BreakingChange } from './compatibility.js'
import type { SchemaVersion, TypeConfig, TypeHistory } from './versions.js'

/** A schema offered as a type's next version. */
export interface Candidate {
  readonly schema: AnySchemaObject
  readonly fingerprint: string
  readonly file?: string
}

/** What became of a candidate: a new version, the version it already was, or the changes that keep it out. */
export type Registered =
  | { readonly outcome: 'created', readonly version: SchemaVersion }
  | { readonly outcome: 'exists', readonly version: SchemaVersion }
  | { readonly outcome: 'incompatible', readonly errors: readonly BreakingChange[] }

/** The check a candidate must pass against the history it would extend (the compatibility rule). */
export type Vet = (history: TypeHistory) => readonly BreakingChange[]

/**
 * Where the registry's versions and per-type settings live: a file embedded, Redis in a
 * cluster. Every change is atomic per type: a candidate is vetted against the history it
 * is appended to, never one another writer has moved past.
 */
export interface RegistryStore {
  readonly kind: 'memory' | 'file' | 'redis'
  /** Every type's history. */
  load: () => Promise<Map<string, TypeHistory>>
  /** One type's history, as stored now. */
  read: (type: string) => Promise<TypeHistory | undefined>
  register: (type: string, candidate: Candidate, vet: Vet) => Promise<Registered>
  configure: (type: string, config: TypeConfig) => Promise<TypeHistory>
  /** Told the type whenever another process changed it (a cluster's other nodes); `undefined`: anything may have changed. Resolves once changes are followed. */
  watch: (changed: (type: string | undefined) => void) => Promise<void>
  close: () => Promise<void>
}

/** The file `FileRegistryStore` keeps, in the data folder. */
export const REGISTRY_FILE = 'schema-registry.json'
/** The data folder's lock: the id of the process whose broker holds it. */
const LOCK_FILE = 'schema-registry.lock'
/** Data folders held by brokers of this process (a lock file cannot tell two of them apart). */
const HELD = new Set<string>()

interface FileContent {
  readonly types: Record<string, TypeHistory>
}

/**
 * The embedded store: the histories in memory, written to `<dataDir>/schema-registry.json`
 * after each change (a temporary file renamed over it, so a crash leaves the old or the
 * new registry, never half of one); without a folder, memory only. Changes are made one at
 * a time; this process is the file's only writer.
 */
export class FileRegistryStore implements RegistryStore {
  readonly kind: 'memory' | 'file'
  readonly #types = new Map<string, TypeHistory>()
  #queue: Promise<unknown> = Promise.resolve()

  private constructor (private readonly path: string | undefined, private readonly lock: string | undefined) {
    this.kind = path === undefined ? 'memory' : 'file'
  }

  /**
   * Open the store in `dataDir` (created if missing), reading what an earlier run
   * registered; `undefined`: memory only. The folder is locked for this broker: a second
   * broker on it (this process or another one alive) would overwrite its registrations,
   * so it is refused; a lock left by a process that died is taken over.
   */
  static async open (dataDir: string | undefined, unwritable: (err: unknown) => void = () => {}): Promise<FileRegistryStore> {
    if (dataDir === undefined) return new FileRegistryStore(undefined, undefined)
    const lock = join(dataDir, LOCK_FILE)
    try {
      await mkdir(dataDir, { recursive: true })
      await takeLock(lock)
    } catch (err: unknown) {
      // a folder this user may not write (a container's working folder): the broker runs, its registrations last until it stops
      if (!isCode(err, 'EACCES') && !isCode(err, 'EROFS') && !isCode(err, 'EPERM')) throw err
      unwritable(err)
      return new FileRegistryStore(undefined, undefined)
    }
    const store = new FileRegistryStore(join(dataDir, REGISTRY_FILE), lock)
    try {
      await store.#read()
    } catch (err: unknown) {
      await store.close()
      throw err
    }
    return store
  }

  async load (): Promise<Map<string, TypeHistory>> {
    return new Map(this.#types)
  }

  async read (type: string): Promise<TypeHistory | undefined> {
    return this.#types.get(type)
  }

  async register (type: string, candidate: Candidate, vet: Vet): Promise<Registered> {
    return await this.#serially(async () => {
      const history = this.#types.get(type) ?? { versions: [], config: {} }
      const same = history.versions.find((v) => v.fingerprint === candidate.fingerprint)
      if (same !== undefined) return { outcome: 'exists', version: same }
      const errors = vet(history)
      if (errors.length > 0) return { outcome: 'incompatible', errors }
      const version = newVersion(type, history.versions.length + 1, candidate)
      await this.#commit(type, { ...history, versions: [...history.versions, version] })
      return { outcome: 'created', version }
    })
  }

  async configure (type: string, config: TypeConfig): Promise<TypeHistory> {
    return await this.#serially(async () => {
      const history = { versions: this.#types.get(type)?.versions ?? [], config }
      await this.#commit(type, history)
      return history
    })
  }

  async watch (): Promise<void> {
    // one process, one writer (the folder is locked): nothing changes behind this store's back
  }

  async close (): Promise<void> {
    await this.#queue
    if (this.lock === undefined) return
    HELD.delete(this.lock)
    await rm(this.lock, { force: true })
  }

  async #serially<T> (work: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(work, work)
    this.#queue = run.catch(() => undefined)
    return await run
  }

  async #read (): Promise<void> {
    if (this.path === undefined) return
    let text: string
    try {
      text = await readFile(this.path, 'utf8')
    } catch (err: unknown) {
      if (isMissing(err)) return
      throw err
    }
    let content: unknown
    try {
      content = JSON.parse(text)
    } catch (err: unknown) {
      throw new SchemaFileError(this.path, `is not JSON (${err instanceof Error ? err.message : String(err)}): restore it from a backup, or remove it to register the schema folder afresh`, { cause: err })
    }
    const types: unknown = typeof content === 'object' && content !== null ? Reflect.get(content, 'types') : undefined
    if (typeof types !== 'object' || types === null) throw new SchemaFileError(this.path, 'holds no "types" object: it is not a schema registry')
    for (const [type, history] of Object.entries(types as FileContent['types'])) this.#types.set(type, history)
  }

  /** Write the registry with `type` changed, and only once it is written hold the change in memory: a failed write changes nothing. */
  async #commit (type: string, history: TypeHistory): Promise<void> {
    const next = new Map(this.#types).set(type, history)
    await this.#write(next)
    this.#types.set(type, history)
  }

  async #write (types: ReadonlyMap<string, TypeHistory>): Promise<void> {
    if (this.path === undefined) return
    const content: FileContent = { types: Object.fromEntries(types) }
    const temporary = `${this.path}.${process.pid}.tmp`
    await writeFile(temporary, JSON.stringify(content, null, 1))
    await rename(temporary, this.path)
  }
}

async function takeLock (lock: string): Promise<void> {
  const inUse = (pid: number): SchemaFileError => new SchemaFileError(lock, `holds the data folder for the broker of process ${pid}: give each broker its own schemas.dataDir (or, in a cluster, share Redis)`)
  if (HELD.has(lock)) throw inUse(process.pid)
  // the process id and, on Linux, its start time: a pid reused by another process after a crash does not hold the folder
  const mine = `${process.pid} ${await startTimeOf(process.pid) ?? ''}`.trim()
  try {
    await writeFile(lock, mine, { flag: 'wx' })
  } catch (err: unknown) {
    if (!isCode(err, 'EEXIST')) throw err
    const [pidText = '', started] = (await readFile(lock, 'utf8').catch(() => '')).trim().split(' ')
    const pid = Number(pidText)
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) {
      const now = await startTimeOf(pid)
      if (started === undefined || now === undefined || now === started) throw inUse(pid)
    }
    // left by a process that is gone (or by this one, before a restart in place): taken over
    await writeFile(lock, mine)
  }
  HELD.add(lock)
}

/** When a process started, in clock ticks since boot (Linux: field 22 of /proc/<pid>/stat), or `undefined` where that cannot be read. */
async function startTimeOf (pid: number): Promise<string | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
    // the fields after "(comm) " start at field 3
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
  } catch {
    return undefined
  }
}

/** Whether a process with this id runs (signal 0 checks without sending; EPERM: it runs as another user). */
function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err: unknown) {
    return isCode(err, 'EPERM')
  }
}

export function newVersion (type: string, version: number, candidate: Candidate): SchemaVersion {
  return {
    type,
    version,
    fingerprint: candidate.fingerprint,
    schema: candidate.schema,
    registeredAt: new Date().toISOString(),
    ...(candidate.file === undefined ? {} : { file: candidate.file })
  }
}

function isMissing (err: unknown): boolean {
  return isCode(err, 'ENOENT')
}

function isCode (err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && Reflect.get(err, 'code') === code
}
