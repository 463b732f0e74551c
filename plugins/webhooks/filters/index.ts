/**
 * Attribute filters of webhook subscriptions: Knative's `filters` dialects
 * (`exact`, `prefix`, `suffix`, `all`, `any`, `not`, `cesql`) compiled into one
 * predicate per subscription, on the CESQL engine in `./cesql/`.
 */
export { compileFilters, InvalidFilterError, type EventFilter, type FilterErrorListener, type FilterLimits, type FilterRefusal } from './dialects.js'
export { compileCesql, CesqlSyntaxError, type CesqlExpression, type EvaluationError, type EvaluationErrorKind, type EventAttributes } from './cesql/index.js'
