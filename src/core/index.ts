/**
 * `regional`: configuration, LSNs, the replay tracker and the consistency context shared by
 * every part (`regional/pg`, `regional/drizzle`, `regional/kysely`, …).
 *
 * @example
 * import { loadConfig, withContext } from 'regional';
 * const config = loadConfig(); // PRIMARY_REGION, REGION, DATABASE_URL, DATABASE_REPLICA_URL
 */

export type { BoundedWaitHooks } from './bounded-wait.js';
export { BoundedWait } from './bounded-wait.js';
export type {
  Env,
  RegionalConfig,
  RegionalOptions,
  RegionSettings,
  RegionSettingsOptions,
  UrlKind,
  WaitPolicy,
} from './config.js';
export { loadConfig, loadRegionSettings, parseServiceUrl, redactUrl } from './config.js';
export type { RunOptions } from './context.js';
export {
  activeContext,
  ConsistencyContext,
  currentContext,
  detached,
  runInContext,
  withContext,
} from './context.js';
export {
  ConfigError,
  RegionalError,
  ReplicationTimeoutError,
  ReplicaUnavailableError,
} from './errors.js';
export type { InstanceRequest, RegionInstancesOptions } from './instances.js';
export { isConnectionError, RegionInstances } from './instances.js';
export type { Lsn } from './lsn.js';
export { compareLsn, formatLsn, LsnFormatError, maxLsn, parseLsn, ZERO_LSN } from './lsn.js';
export type {
  SignatureFailure,
  SignedRequestParts,
  SigningKey,
  VerifierOptions,
} from './signing.js';
export {
  Keyring,
  MIN_SECRET_LENGTH,
  RequestVerifier,
  SIGNATURE_HEADER,
  signRequest,
} from './signing.js';
export type { ReplicatedSource } from './source.js';
export type { PositionPoller, ReplayTrackerOptions, ReplayTrackerStats } from './tracker.js';
export { ReplayTracker } from './tracker.js';
