/** The types the compatibility checker and its keyword rules share (a file of their own, so neither imports the other back). */

/** How a new schema version must relate to the registered ones (Confluent's levels). */
export type CompatibilityLevel = 'BACKWARD' | 'BACKWARD_TRANSITIVE' | 'FORWARD' | 'FORWARD_TRANSITIVE' | 'FULL' | 'FULL_TRANSITIVE' | 'NONE'
export const COMPATIBILITY_LEVELS: readonly CompatibilityLevel[] = Object.freeze(
  ['BACKWARD', 'BACKWARD_TRANSITIVE', 'FORWARD', 'FORWARD_TRANSITIVE', 'FULL', 'FULL_TRANSITIVE', 'NONE'] as const)
/** One change that breaks the rule, where `path` is a JSON Pointer into the NEW schema (or the old one when the keyword was removed), e.g. "/properties/nights/minimum". */
export interface BreakingChange { readonly path: string, readonly message: string }
/** A JSON Schema: an object or a boolean schema. */
export type JsonSchema = boolean | { readonly [keyword: string]: unknown }
/**
 * Resolves a `$ref` (as written) against the base URI in force where it occurs (the nearest enclosing `$id`, or undefined).
 * Returns the target subschema and the base URI in force at the target, or undefined when it cannot be resolved.
 */
export type RefResolver = (ref: string, base: string | undefined) => { readonly schema: JsonSchema, readonly base: string | undefined } | undefined

/** JSON Schema dialects ajv reads differently (array and `dependent*` keywords), as registry.ts tells them apart. */
export type Dialect = '2020-12' | 'draft-07'
export interface SchemaObject { readonly [keyword: string]: unknown }
/** A subschema where it sits: what its `$ref`s resolve against, and where problems found in it are reported. */
export interface Loc {
  readonly schema: JsonSchema
  /** Base URI of the schema's own keywords (its own `$id` applied). */
  readonly base: string | undefined
  /** The schema resource that fragment-only refs ("#/$defs/x") point into, when known. */
  readonly root: JsonSchema | undefined
  /** JSON Pointer reported for problems found here; a `$ref` target keeps the pointer of its `$ref`. */
  readonly path: string
  readonly dialect: Dialect
}
export interface ObjLoc extends Loc { readonly schema: SchemaObject }
/** What the keyword rules need from the engine, which knows how refs resolve. */
export interface Engine {
  /** The changes by which `next` rejects instances all `prevs` accept ([] accepts anything); `descend`: one level down into the instance. */
  readonly fits: (prevs: readonly Loc[], next: Loc, descend: boolean) => BreakingChange[]
  /** Equal values (keyword values, subschemas) whose `$ref`s also resolve alike. */
  readonly sameValue: (p: Loc, pv: unknown, n: Loc, nv: unknown) => boolean
}
