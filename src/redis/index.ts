/**
 * `regional/redis`: Redis in every region. A {@link SharedStore} reads from this region's
 * replica and writes to the primary, with read-your-writes through replication offsets; a
 * {@link RegionalCache} keeps entries in this region's own instance and purges them everywhere.
 *
 * @example
 * import { RegionalCache, SharedStore } from 'regional/redis';
 * const store = new SharedStore(); // REDIS_URL, REDIS_REPLICA_URL
 * const cache = new RegionalCache({ store }); // REDIS_CACHE_URL
 */

export type { CacheSetOptions, RegionalCacheOptions, RegionalCacheStats } from './cache.js';
export { RegionalCache } from './cache.js';
export type { CommandKind, RedisArg } from './commands.js';
export { commandKind } from './commands.js';
export type { RedisConfig, RedisOptions } from './config.js';
export { loadRedisConfig } from './config.js';
export type { ConnectionSettings } from './connection.js';
export {
  CachePurgeError,
  RedisPrimaryUnavailableError,
  RedisUnsupportedCommandError,
} from './errors.js';
export type { OffsetPoller } from './offset-poller.js';
export { redisOffsetPoller } from './offset-poller.js';
export type { Purge } from './purge.js';
export type { ReplicationInfo } from './replication-info.js';
export { parseReplicationInfo } from './replication-info.js';
export type {
  RedisCommand,
  SharedStoreOptions,
  SharedStoreStats,
  StoreCommandOptions,
} from './store.js';
export { SharedStore } from './store.js';
