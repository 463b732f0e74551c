import { defer } from './cleanup.js'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import { generate } from 'selfsigned'

/** A certificate for 127.0.0.1/localhost made for this test, as PEM files in a temporary folder. */
export interface TestCert {
  readonly keyFile: string
  readonly certFile: string
  /** The certificate itself, for a client to trust. */
  readonly cert: string
}

export async function makeCert (t: TestContext): Promise<TestCert> {
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
    keySize: 2048,
    algorithm: 'sha256',
    extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }] }]
  })
  const dir = await mkdtemp(join(tmpdir(), 'ce-broker-cert-'))
  defer(t, () => rm(dir, { recursive: true, force: true }))
  const keyFile = join(dir, 'key.pem')
  const certFile = join(dir, 'cert.pem')
  await writeFile(keyFile, pems.private)
  await writeFile(certFile, pems.cert)
  return { keyFile, certFile, cert: pems.cert }
}
