/**
 * `regional/http`: framework-neutral request handling — replay of writes in the primary
 * region, consistency tokens, waits before the handler, and Regional's response headers.
 * Adapters: `regional/http/node`, `regional/hono`, `regional/express`, `regional/fastify`;
 * any Web-standard `fetch` handler: {@link regionalFetch}.
 *
 * @example
 * import { regionalFetch } from 'regional/http';
 * export default { fetch: regionalFetch(app.fetch, { sources: [pool] }) };
 */

export type { TokenCookieOptions } from './cookie.js';
export type { HealthOptions } from './endpoints.js';
export { HEALTH_LIVE_PATH, HEALTH_READY_PATH, PING_PATH } from './endpoints.js';
export type { ClientError } from './errors.js';
export { clientError, isReadOnlyError, LagReplayError, WriteInReadError } from './errors.js';
export type { FetchHandler } from './fetch.js';
export {
  answerResponse,
  handleFetch,
  regionalFetch,
  webReplaySource,
  webView,
  withHeaders,
} from './fetch.js';
export { REGION_HEADER, REPLAYED_FROM_HEADER, TOKEN_HEADER } from './headers.js';
export type { MarkerCheck } from './marker.js';
export { FLY_REPLAY_SRC, REPLAY_HEADER, ReplayMarkers } from './marker.js';
export { RegionalHttp } from './regional-http.js';
export type { ReplayAnswer, ReplaySource } from './replay.js';
export { FLY_REPLAY_FAILED } from './replay.js';
export type { ReplayReason, RequestView } from './request-state.js';
export { RequestState } from './request-state.js';
export type { RouteSpec } from './routes.js';
export type { HttpSettings, LagPolicy, RegionalHttpOptions, ReplayMode } from './settings.js';
export { loadHttpSettings } from './settings.js';
export type { HttpStats } from './stats.js';
export type { Positions, TokenFailure } from './token.js';
export { decodeToken, encodeToken } from './token.js';
