import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto'

/**
 * Password hashes in the PHC string format with scrypt:
 * `$scrypt$ln=15,r=8,p=1$<salt>$<hash>` (base64 without padding), so the cost
 * travels with each hash and can be raised later without breaking old ones.
 * scrypt is node's own (`crypto.scrypt`), run on libuv's thread pool: a login never
 * blocks the event loop.
 */

/** log2 of scrypt's N: 2^15 × 8 × 128 bytes = 32 MiB and about 50–100 ms per check. */
const DEFAULT_LN = 15
const R = 8
const P = 1
const SALT_BYTES = 16
const KEY_BYTES = 32
const FORMAT = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]{16,})\$([A-Za-z0-9+/]{16,})$/

interface Parsed {
  readonly ln: number
  readonly r: number
  readonly p: number
  readonly salt: Buffer
  readonly hash: Buffer
}

/** Why `hash` is not a password hash this broker checks, or `undefined` when it is. */
export function hashProblem (hash: string): string | undefined {
  const parsed = parse(hash)
  if (parsed === undefined) return 'is not a password hash: make one with `ce-broker hash-password` ($scrypt$ln=…,r=…,p=…$salt$hash)'
  if (parsed.ln < 10 || parsed.ln > 20) return `has scrypt cost ln=${parsed.ln}, outside 10–20`
  return undefined
}

/** Hash `password` with a fresh random salt. */
export async function hashPassword (password: string, ln = DEFAULT_LN): Promise<string> {
  const salt = randomBytes(SALT_BYTES)
  const hash = await derive(password, salt, KEY_BYTES, { N: 2 ** ln, r: R, p: P })
  return `$scrypt$ln=${ln},r=${R},p=${P}$${b64(salt)}$${b64(hash)}`
}

/** Whether `password` matches `hash`, compared in constant time. A malformed hash never matches. */
export async function verifyPassword (password: string | Buffer, hash: string): Promise<boolean> {
  const parsed = parse(hash)
  if (parsed === undefined) return false
  const derived = await derive(password, parsed.salt, parsed.hash.length, { N: 2 ** parsed.ln, r: parsed.r, p: parsed.p })
  return timingSafeEqual(derived, parsed.hash)
}

/** A hash of nothing anybody knows: checked against for unknown users, so that they cost the same time as known ones. */
export const DECOY_HASH = '$scrypt$ln=15,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'

function parse (hash: string): Parsed | undefined {
  const match = FORMAT.exec(hash)
  if (match === null) return undefined
  const [, ln, r, p, salt, key] = match
  return { ln: Number(ln), r: Number(r), p: Number(p), salt: Buffer.from(salt ?? '', 'base64'), hash: Buffer.from(key ?? '', 'base64') }
}

async function derive (password: string | Buffer, salt: Buffer, length: number, options: ScryptOptions): Promise<Buffer> {
  const N = options.N ?? 1
  const r = options.r ?? R
  // scrypt needs 128 × N × r bytes; node refuses beyond `maxmem` (32 MiB by default)
  const maxmem = 256 * N * r
  return await new Promise((resolve, reject) => {
    scrypt(password, salt, length, { ...options, maxmem }, (err, key) => { if (err === null) resolve(key); else reject(err) })
  })
}

function b64 (bytes: Buffer): string {
  return bytes.toString('base64').replace(/=+$/, '')
}
