/**
 * `regional/health`: liveness and readiness that know about replication. The HTTP adapters
 * serve them; any other server can call {@link checkReadiness} itself.
 *
 * @example
 * import { checkReadiness } from 'regional/health';
 * const report = await checkReadiness({ pool });
 * res.statusCode = report.ready ? 200 : 503;
 */

export type { PingAnswer, PingHandlerOptions, PingResult } from './ping.js';
export { PING_PATH, pingHandler, pingInstance } from './ping.js';
export type {
  CheckResult,
  ReadinessCacheOptions,
  ReadinessOptions,
  ReadinessReport,
  ReadinessTarget,
} from './readiness.js';
export { checkReadiness, isReadinessTarget, liveness, Readiness } from './readiness.js';
