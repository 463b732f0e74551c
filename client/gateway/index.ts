export { gatewayInterceptor, type GatewayInterceptorOptions } from './fastify.js'
export { gatewayMiddleware, type GatewayMiddleware, type GatewayMiddlewareOptions, type GatewayResponse } from './express.js'
export { extractEvents, toEvent, EVENTS_HEADER, type Extracted, type ExtractLimits, type HeaderValue, type Problem as ExtractProblem } from './extract.js'
export type { GatewayEvents, GatewayLogger, GatewayOptions, GatewayOutcome, GatewayOutcomeReport, GatewayPublisher, GatewayStats } from './relay.js'
