import { chownSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { RegionalError } from '../../core/errors.js';
import { parseReplicationInfo, type ReplicationInfo } from '../../redis/replication-info.js';
import type { LatencyProxy } from '../link/latency-proxy.js';
import { reusePort } from '../ports.js';
import type { ServerUser } from '../server-user.js';
import type { Topology } from '../topology.js';
import type { Watchdog } from '../watchdog.js';
import type { RedisBinary } from './binary.js';
import { leftoverRedisPid, RedisServer, stopRedisProcess } from './server.js';

/** The three kinds of Redis server in a region. */
export type RedisRole = 'primary' | 'replica' | 'cache';

/** The Redis side of what an app instance in one region is configured with. */
export interface RedisEndpoints {
  /** `REDIS_URL`: the primary, as reached from this region (through the link from replica regions). */
  redisUrl: string;
  /** `REDIS_REPLICA_URL`: this region's replica (`null` in the primary region). */
  redisReplicaUrl: string | null;
  /** `REDIS_CACHE_URL`: this region's cache instance (not replicated). */
  redisCacheUrl: string;
}

/** What the local cluster hands its Redis part. */
export interface LocalRedisContext {
  dir: string;
  topology: Topology;
  binary: RedisBinary;
  user: ServerUser | null;
  watchdog: Watchdog;
  password: string;
  /** Ports kept between runs, updated in place. */
  ports: Record<string, number>;
  /** Opens a proxy on the link from `region` to `targetPort` in the primary region (its port is kept). */
  proxy(region: string, kind: string, targetPort: number): Promise<LatencyProxy>;
  /** Servers to stop if the process exits without `stop()`. */
  live: Set<{ stopSync(): void }>;
  progress: (message: string) => void;
}

type RedisConstructor = new (url: string, options?: Record<string, unknown>) => Redis;

async function loadIoredis(): Promise<RedisConstructor> {
  try {
    return (await import('ioredis')).Redis as unknown as RedisConstructor;
  } catch (error) {
    throw new RegionalError(
      'REGIONAL_PACKAGE_MISSING',
      'The Redis part of the local cluster needs the ioredis package to check on its servers: npm install -D ioredis@">=5.4 <7"',
      { cause: error },
    );
  }
}

/**
 * The Redis servers of a local cluster: the primary in the primary region, a replica in every
 * other region replicating through that region's latency link, and a cache instance (no
 * replication) in every region. Reached as `cluster.redis`.
 *
 * @example
 * const cluster = await LocalCluster.start({ temporary: true, redis: true });
 * await cluster.redis.server('syd', 'replica').stop();
 * await cluster.redis.pauseReplication('cdg');
 * await cluster.redis.waitForSync();
 */
export class LocalRedis {
  private readonly servers = new Map<string, RedisServer>();
  /** Per replica region: the proxy apps use to reach the primary, and the one replication uses. */
  private readonly proxies = new Map<string, { app: LatencyProxy; replication: LatencyProxy }>();
  private readonly admins = new Map<string, Redis>();

  private constructor(
    private readonly context: LocalRedisContext,
    private readonly RedisClient: RedisConstructor,
  ) {}

  /** Starts every Redis server of the cluster and waits until each replica has synchronised. */
  static async start(context: LocalRedisContext): Promise<LocalRedis> {
    const local = new LocalRedis(context, await loadIoredis());
    try {
      await local.boot();
    } catch (error) {
      await local.stop().catch(() => {});
      throw error;
    }
    return local;
  }

  private get topology(): Topology {
    return this.context.topology;
  }

  /** The Redis configuration of an app instance in `region`. */
  endpoints(region: string): RedisEndpoints {
    const { primaryRegion } = this.topology;
    const primaryPort =
      region === primaryRegion
        ? this.server(primaryRegion, 'primary').port
        : this.proxiesFor(region).app.port;
    return {
      redisUrl: this.url(primaryPort),
      redisReplicaUrl:
        region === primaryRegion ? null : this.url(this.server(region, 'replica').port),
      redisCacheUrl: this.url(this.server(region, 'cache').port),
    };
  }

  /** The environment variables of {@link endpoints}. */
  env(region: string): Record<string, string> {
    const e = this.endpoints(region);
    return {
      REDIS_URL: e.redisUrl,
      ...(e.redisReplicaUrl ? { REDIS_REPLICA_URL: e.redisReplicaUrl } : {}),
      REDIS_CACHE_URL: e.redisCacheUrl,
    };
  }

  /**
   * A Redis server of `region`: its `cache`, its `replica` (replica regions), or the `primary`
   * (primary region). `stop()`, `start()` and `kill()` it for fault tests.
   */
  server(region: string, role: RedisRole): RedisServer {
    const server = this.servers.get(`${region}:${role}`);
    if (!server) {
      const has = [...this.servers.keys()].filter((key) => key.startsWith(`${region}:`));
      throw new Error(
        `No Redis ${role} in region "${region}"` +
          (has.length ? ` (it has: ${has.map((k) => k.split(':')[1]).join(', ')})` : '') +
          `; the primary is in ${this.topology.primaryRegion}`,
      );
    }
    return server;
  }

  /** A URL of the server itself, same-region (not through a link). */
  serverUrl(region: string, role: RedisRole): string {
    return this.url(this.server(region, role).port);
  }

  /**
   * Holds the replication stream to the replica in `region` (its link to the primary hangs, so
   * it falls behind while apps still reach both); {@link resumeReplication} delivers what was held.
   */
  async pauseReplication(region: string): Promise<void> {
    await this.proxiesFor(region).replication.cut('hang');
  }

  async resumeReplication(region: string): Promise<void> {
    await this.proxiesFor(region).replication.restore();
  }

  /** The proxy the replica in `region` replicates through (for its counters). */
  replicationProxy(region: string): LatencyProxy {
    return this.proxiesFor(region).replication;
  }

  /** `INFO replication` of a server, asked directly. */
  async replication(region: string, role: RedisRole): Promise<ReplicationInfo> {
    return parseReplicationInfo(await this.admin(region, role).info('replication'));
  }

  /**
   * Resolves once every replica (or those named) follows the primary's history and has
   * processed its offset as of now (or as of when that history began, if it changes meanwhile:
   * the primary starts a new one when its first replica attaches).
   */
  async waitForSync(
    timeoutMs = 30_000,
    regions: readonly string[] = this.topology.replicaRegions,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let target: ReplicationInfo | null = null;
    for (const region of regions) {
      for (;;) {
        const primary = await this.replication(this.topology.primaryRegion, 'primary');
        if (target?.replid !== primary.replid) target = primary;
        const replica = await this.replication(region, 'replica').catch(() => null);
        if (replica?.linkUp && replica.replid === target.replid && replica.offset >= target.offset)
          break;
        if (Date.now() > deadline) {
          throw new Error(
            `The Redis replica in ${region} did not reach the primary's offset ${target.offset} ` +
              `within ${timeoutMs} ms (it is at ${replica ? `${replica.offset}, link ${replica.linkUp ? 'up' : 'down'}${replica.replid === target.replid ? '' : ', another history'}` : 'an unknown offset'})`,
          );
        }
        await sleep(5);
      }
    }
  }

  /** Stops every Redis server and closes the admin connections. */
  async stop(): Promise<void> {
    for (const admin of this.admins.values()) admin.disconnect();
    this.admins.clear();
    await Promise.all(
      [...this.servers.values()].map(async (server) => {
        await server.stop();
        this.context.live.delete(server);
      }),
    );
  }

  private admin(region: string, role: RedisRole): Redis {
    const server = this.server(region, role);
    const key = `${region}:${role}:${server.port}`;
    let admin = this.admins.get(key);
    if (!admin) {
      admin = new this.RedisClient(this.url(server.port), {
        maxRetriesPerRequest: 1,
        retryStrategy: () => 50,
        connectTimeout: 2_000,
      });
      // A fault test stops servers under it; the next command reconnects.
      admin.on('error', () => {});
      this.admins.set(key, admin);
    }
    return admin;
  }

  private url(port: number): string {
    return `redis://:${this.context.password}@127.0.0.1:${port}`;
  }

  private proxiesFor(region: string): { app: LatencyProxy; replication: LatencyProxy } {
    const proxies = this.proxies.get(region);
    if (!proxies) {
      throw new Error(
        `${region} is not a replica region of this cluster (the primary region is ${this.topology.primaryRegion})`,
      );
    }
    return proxies;
  }

  private newServer(region: string, role: RedisRole, port: number): RedisServer {
    const { dir, user, binary, watchdog, password } = this.context;
    const dataDir = path.join(dir, 'redis', `${region}-${role}`);
    mkdirSync(dataDir, { recursive: true });
    if (user) {
      chownSync(path.dirname(dataDir), user.uid, user.gid);
      chownSync(dataDir, user.uid, user.gid);
    }
    const server = new RedisServer({
      name: `${region} Redis ${role}`,
      dataDir,
      port,
      binary,
      user,
      watchdog,
      logFile: path.join(dir, 'logs', `redis-${region}-${role}.log`),
      settings: () => ({
        ...baseSettings(password),
        ...(role === 'primary' ? PRIMARY_SETTINGS : {}),
        // Redis 7 waits up to 10 s at shutdown for lagging replicas (one held by a fault test).
        ...(role === 'primary' && binary.major >= 7 ? { 'shutdown-timeout': '1' } : {}),
        ...(role === 'cache' ? CACHE_SETTINGS : {}),
        ...(role === 'replica' ? this.replicaSettings(region) : {}),
      }),
    });
    this.servers.set(`${region}:${role}`, server);
    this.context.live.add(server);
    return server;
  }

  private replicaSettings(region: string): Record<string, string> {
    return {
      replicaof: `127.0.0.1 ${this.proxiesFor(region).replication.port}`,
      masterauth: this.context.password,
      'replica-read-only': 'yes',
      // A replica cut off from the primary keeps answering reads: Regional decides what to trust.
      'replica-serve-stale-data': 'yes',
    };
  }

  private async startServer(region: string, role: RedisRole): Promise<RedisServer> {
    const ports = this.context.ports;
    const key = `redis:${region}:${role}`;
    const server = this.newServer(region, role, await reusePort(ports[key]));
    const leftover = leftoverRedisPid(server.dataDir);
    if (leftover) {
      this.context.progress(
        `stopping a leftover ${server.name} (pid ${leftover}) from an earlier run`,
      );
      await stopRedisProcess(leftover);
    }
    for (let attempt = 0; ; attempt++) {
      try {
        await server.start();
        break;
      } catch (error) {
        // Another process took the port between our check and the server binding it.
        if (attempt >= 3 || !/Address already in use/i.test(server.logTail(5))) throw error;
        server.port = await reusePort(undefined);
      }
    }
    ports[key] = server.port;
    return server;
  }

  private async boot(): Promise<void> {
    const { primaryRegion, replicaRegions, regions } = this.topology;
    const { progress } = this.context;
    progress(`starting Redis: ${primaryRegion} primary and a cache per region`);
    const primary = await this.startServer(primaryRegion, 'primary');
    await Promise.all(regions.map((region) => this.startServer(region, 'cache')));
    for (const region of replicaRegions) {
      this.proxies.set(region, {
        app: await this.context.proxy(region, 'redis', primary.port),
        replication: await this.context.proxy(region, 'redis-replication', primary.port),
      });
    }
    if (replicaRegions.length === 0) return;
    progress(`starting Redis replicas: ${replicaRegions.join(', ')}`);
    await Promise.all(replicaRegions.map((region) => this.startServer(region, 'replica')));
    progress('waiting for Redis replicas to synchronise');
    await this.waitForSync(60_000);
  }
}

function baseSettings(password: string): Record<string, string> {
  return {
    bind: '127.0.0.1',
    'protected-mode': 'no',
    requirepass: password,
    save: '',
    appendonly: 'no',
    loglevel: 'notice',
  };
}

const PRIMARY_SETTINGS: Record<string, string> = {
  // Every acknowledged write is in the append-only file; a clean stop flushes it.
  appendonly: 'yes',
  appendfsync: 'everysec',
  'repl-diskless-sync': 'yes',
  'repl-diskless-sync-delay': '0',
  // A replica cut off for a while resumes from the backlog instead of a full copy, and the
  // backlog (and with it the history) is kept even while no replica is connected.
  'repl-backlog-size': '16mb',
  'repl-backlog-ttl': '0',
};

const CACHE_SETTINGS: Record<string, string> = {
  maxmemory: '64mb',
  'maxmemory-policy': 'allkeys-lru',
};
