import { readFile } from 'node:fs/promises'
import { createLocalJWKSet, jwtVerify, type JWTPayload, type JWTVerifyOptions } from 'jose'
import { ConfigError, type ConnectAttempt, type ConnectRefusedError, type Identity } from '../../src/core/index.js'
import { ANONYMOUS_ROLE } from './acl.js'
import type { AuthJwt, AuthUser } from './config.js'
import { DECOY_HASH, hashProblem, verifyPassword } from './passwords.js'

/** Makes the refusal of one CONNECT, with its CONNACK return code; counted and remembered by the plugin. */
export type Refuse = (returnCode: 2 | 3 | 4 | 5, reason: string, message: string) => ConnectRefusedError

/** The shape of a compact JWS: three base64url parts. */
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/

/** What the auth plugin checks a CONNECT's user name and password against. */
export interface Credentials {
  /** Nobody must prove who they are: credentials are not checked and everyone is anonymous. */
  readonly open: boolean
  readonly users: number
  readonly jwt: boolean
  /** Who the credentials say the client is (`undefined`: anonymous); throws a refusal (CONNACK 4 or 5) when they say nothing good. */
  readonly identify: (attempt: ConnectAttempt, refuse: Refuse) => Promise<Identity | undefined>
}

export interface CredentialsOptions {
  readonly users: readonly AuthUser[]
  readonly jwt?: AuthJwt
  readonly allowAnonymous: boolean
}

/** The configured users (each hash checked) and JWT verifier; a bad hash or key set stops start-up. */
export async function loadCredentials (opts: CredentialsOptions): Promise<Credentials> {
  const users = checkUsers(opts.users)
  const open = opts.users.length === 0 && opts.jwt === undefined
  const verifyJwt = opts.jwt === undefined ? undefined : await jwtVerifier(opts.jwt)

  /** Who the credentials say the client is; refuses (CONNACK 4 or 5) when they say nothing good. */
  async function identify (attempt: ConnectAttempt, refuse: Refuse): Promise<Identity | undefined> {
    const { username, password } = attempt
    // as without the plugin: anonymous access while no users are configured (PRODUCT §6)
    if (open) return undefined
    if (username === undefined && password === undefined) {
      if (opts.allowAnonymous) return undefined
      throw refuse(5, 'no_credentials', 'credentials are required')
    }
    const secret = password ?? Buffer.alloc(0)
    // the password's shape alone picks the check, so its duration tells nothing of which user names exist
    if (verifyJwt !== undefined && JWT_SHAPE.test(secret.toString('latin1'))) {
      const identity = await verifyJwt(secret.toString('latin1'), username).catch((err: unknown) => {
        throw refuse(4, 'bad_credentials', `the token was refused: ${err instanceof Error ? err.message : String(err)}`)
      })
      // a token never speaks for a configured user: their rules are theirs
      if (users.has(identity.username)) throw refuse(4, 'bad_credentials', `the token names ${JSON.stringify(identity.username)}, a configured user`)
      return identity
    }
    const user = username === undefined ? undefined : users.get(username)
    // an unknown user costs the same scrypt as a known one: timing tells nothing
    const matches = await verifyPassword(secret, user?.password ?? DECOY_HASH)
    if (user === undefined || !matches) throw refuse(4, 'bad_credentials', 'bad user name or password')
    return { username: user.username, roles: user.roles }
  }

  return { open, users: users.size, jwt: verifyJwt !== undefined, identify }
}

/** Users by name, each hash checked: a plain password in the config stops start-up, naming its place. */
function checkUsers (users: readonly AuthUser[]): Map<string, AuthUser> {
  const byName = new Map<string, AuthUser>()
  users.forEach((user, i) => {
    const problem = hashProblem(user.password)
    if (problem !== undefined) throw new ConfigError('auth plugin', `auth.users.${i}.password`, problem)
    if (byName.has(user.username)) throw new ConfigError('auth plugin', `auth.users.${i}.username`, `repeats ${JSON.stringify(user.username)}`)
    byName.set(user.username, user)
  })
  return byName
}

/** Verifies a JWT password and reads the identity from its claims; the CONNECT's user name, when given, must be the token's. */
async function jwtVerifier (config: AuthJwt): Promise<(token: string, username: string | undefined) => Promise<Identity>> {
  if ((config.secret === undefined) === (config.jwksFile === undefined)) {
    throw new ConfigError('auth plugin', 'auth.jwt', 'needs exactly one of secret and jwksFile')
  }
  // a token without an expiry would be good forever
  const options: JWTVerifyOptions = {
    requiredClaims: ['exp'],
    ...(config.issuer === undefined ? {} : { issuer: config.issuer }),
    ...(config.audience === undefined ? {} : { audience: config.audience })
  }
  let verify: (token: string) => Promise<JWTPayload>
  if (config.secret !== undefined) {
    const key = new TextEncoder().encode(config.secret)
    verify = async (token) => (await jwtVerify(token, key, { ...options, algorithms: ['HS256'] })).payload
  } else {
    const file = config.jwksFile ?? ''
    let keys: ReturnType<typeof createLocalJWKSet>
    try {
      keys = createLocalJWKSet(JSON.parse(await readFile(file, 'utf8')) as Parameters<typeof createLocalJWKSet>[0])
    } catch (err: unknown) {
      throw new ConfigError('auth plugin', 'auth.jwt.jwksFile', `cannot be read as a JSON Web Key Set: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
    }
    verify = async (token) => (await jwtVerify(token, keys, options)).payload
  }
  const usernameClaim = config.usernameClaim ?? 'sub'
  const rolesClaim = config.rolesClaim ?? 'roles'
  return async function identityOf (token, username) {
    const claims = await verify(token)
    const name = claims[usernameClaim]
    if (typeof name !== 'string' || name === '') throw new Error(`the token has no "${usernameClaim}" claim`)
    if (username !== undefined && username !== '' && username !== name) throw new Error(`the token is ${JSON.stringify(name)}'s, not ${JSON.stringify(username)}'s`)
    const raw = claims[rolesClaim]
    const roles = typeof raw === 'string' ? [raw] : Array.isArray(raw) ? raw.filter((r): r is string => typeof r === 'string') : []
    // a token never makes a client anonymous: that role is for clients without credentials
    return { username: name, roles: roles.filter((role) => role !== ANONYMOUS_ROLE) }
  }
}

