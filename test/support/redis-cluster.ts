import type { LocalCluster } from '../../src/testing/cluster.js';

/** The Redis options of an app instance in `region` of a cluster started with `{ redis: true }`. */
export function redisOptions(cluster: LocalCluster, region: string) {
  const redis = cluster.endpoints(region).redis;
  if (!redis) throw new Error('start the cluster with { redis: true }');
  return {
    primaryRegion: cluster.primaryRegion,
    region,
    url: redis.redisUrl,
    replicaUrl: redis.redisReplicaUrl,
    cacheUrl: redis.redisCacheUrl,
  };
}

/** `url` with its port replaced, e.g. to go through a counting proxy. */
export function withPort(url: string, port: number): string {
  const parsed = new URL(url);
  parsed.port = String(port);
  return parsed.toString();
}
