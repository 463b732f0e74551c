import { Type } from '@sinclair/typebox'
import { configSection, setting, type Settings } from '../../src/core/index.js'

const nonEmpty = { minLength: 1 }
const filters = Type.Array(Type.String(nonEmpty))

/** An MQTT user (PRODUCT §6): a password hash from `ce-broker hash-password`, and roles for the ACL. */
const userSchema = Type.Object({
  username: Type.String(nonEmpty),
  password: Type.String(nonEmpty),
  roles: Type.Array(Type.String(nonEmpty))
}, { additionalProperties: false })

/** An ACL rule: for a `role` or a `user`, the filters it may publish to and subscribe to, and those it may not. */
const aclRuleSchema = Type.Object({
  role: Type.Optional(Type.String(nonEmpty)),
  user: Type.Optional(Type.String(nonEmpty)),
  publish: filters,
  subscribe: filters,
  // refused even where a grant covers them: a deny wins over every grant of the client's rules
  deny: Type.Optional(Type.Object({ publish: Type.Optional(filters), subscribe: Type.Optional(filters) }, { additionalProperties: false }))
}, { additionalProperties: false })

/** How JWT passwords are checked; the token's claims name the user and its roles. */
const jwtSchema = Type.Object({
  secret: Type.Optional(Type.String({
    minLength: 32,
    ...setting({ env: 'CE_BROKER_AUTH_JWT_SECRET', doc: 'HS256 secret JWT passwords are verified with (at least 32 characters)' })
  })),
  jwksFile: Type.Optional(Type.String({
    ...nonEmpty,
    ...setting({
      env: 'CE_BROKER_AUTH_JWT_JWKS_FILE',
      doc: 'JSON Web Key Set file JWT passwords are verified with; `auth.jwt.issuer`, `audience`, `usernameClaim` (`sub`), `rolesClaim` (`roles`) go with either'
    })
  })),
  issuer: Type.Optional(Type.String(nonEmpty)),
  audience: Type.Optional(Type.String(nonEmpty)),
  // the claim holding the user name; the auth plugin reads `sub` when absent
  usernameClaim: Type.Optional(Type.String(nonEmpty)),
  // the claim holding the roles (an array of strings, or one string); `roles` when absent
  rolesClaim: Type.Optional(Type.String(nonEmpty))
}, { additionalProperties: false })

export type AuthUser = Settings<typeof userSchema>
export type AclRuleInput = Settings<typeof aclRuleSchema>
export type AuthJwt = Settings<typeof jwtSchema>

/** Who may connect, publish and subscribe. The HTTP API's keys (`auth.apiKeys`) are the core's. */
export const authSection = configSection({
  key: 'auth',
  schema: Type.Object({
    allowAnonymous: Type.Boolean({
      default: false,
      ...setting({ env: 'CE_BROKER_AUTH_ALLOW_ANONYMOUS', doc: 'let clients without credentials in, with the role `anonymous`, although users or JWTs are configured' })
    }),
    users: Type.Array(userSchema, {
      default: [],
      ...setting({ doc: 'MQTT users: `{ username, password, roles }`, the password a hash from `ce-broker hash-password`; once any exists (or `auth.jwt`), clients must authenticate' })
    }),
    acl: Type.Array(aclRuleSchema, {
      default: [],
      ...setting({ doc: 'rules `{ role or user, publish: [filters], subscribe: [filters] }`; `%u` is the user name, `%c` the client id' })
    }),
    jwt: Type.Optional(jwtSchema),
    // failed logins from one address within `windowMs` beyond which its CONNECTs are refused unchecked until the window ends
    loginFailures: Type.Object({
      max: Type.Integer({
        minimum: 1,
        default: 10,
        ...setting({ env: 'CE_BROKER_AUTH_LOGIN_FAILURES_MAX', doc: 'failed logins from one address within the window before its CONNECTs are refused unchecked (CONNACK 5)' })
      }),
      windowMs: Type.Integer({
        minimum: 1,
        default: 60_000,
        ...setting({ env: 'CE_BROKER_AUTH_LOGIN_FAILURES_WINDOW_MS', doc: 'that window, from the address\'s first failure' })
      })
    }, { additionalProperties: false })
  }, { additionalProperties: false })
})
