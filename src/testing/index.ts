/**
 * `regional/testing`: a real multi-region cluster on one machine, for tests and local
 * development.
 *
 * @example
 * import { LocalCluster } from 'regional/testing';
 * const cluster = await LocalCluster.start({ dir: '.regional/test', rttMs: { syd: 100 } });
 * process.env = { ...process.env, ...cluster.env('syd') };
 * // ... run the app's tests as if in syd ...
 * await cluster.stop();
 */

export type { LocalClusterOptions, RegionEndpoints } from './cluster.js';
export { LocalCluster, RegionLink } from './cluster.js';
export type { CutMode, LatencyProxyOptions, ProxyStats } from './link/latency-proxy.js';
export { LatencyProxy } from './link/latency-proxy.js';
export { findPostgresBinaries } from './postgres/binaries.js';
export type { PostgresServer } from './postgres/server.js';
export type { RedisBinary } from './redis/binary.js';
export {
  findRedisServer,
  REDIS_INSTALL_HINT,
  RedisMissingError,
  redisUnavailableReason,
} from './redis/binary.js';
export type { LocalRedis, RedisEndpoints, RedisRole } from './redis/local-redis.js';
export type { RedisServer } from './redis/server.js';
export type { Topology, TopologyInput } from './topology.js';
export {
  DEFAULT_PRIMARY_REGION,
  DEFAULT_REGIONS,
  parseRttList,
  resolveTopology,
  TopologyError,
} from './topology.js';
