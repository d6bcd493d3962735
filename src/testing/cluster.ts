import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { formatLsn, type Lsn, parseLsn } from '../core/lsn.js';
import { type CutMode, LatencyProxy, type ProxyStats } from './link/latency-proxy.js';
import { reusePort } from './ports.js';
import { findPostgresBinaries, type PostgresBinaries } from './postgres/binaries.js';
import { isAlive, PostgresServer, readPostmasterPid, stopPostmaster } from './postgres/server.js';
import { findRedisServer, type RedisBinary } from './redis/binary.js';
import { LocalRedis, type RedisEndpoints } from './redis/local-redis.js';
import {
  assertWritableBy,
  binariesUsableBy,
  resolveServerUser,
  type ServerUser,
} from './server-user.js';
import { pairKey, resolveTopology, type Topology, type TopologyInput } from './topology.js';
import { Watchdog } from './watchdog.js';

export interface LocalClusterOptions extends TopologyInput {
  /** Where data lives; it survives restarts. Default: `.regional` in the current directory. */
  dir?: string;
  /**
   * Use a new directory in the system temp folder and delete it on `stop()`: for tests that
   * want a cluster of their own. Ignores `dir`.
   */
  temporary?: boolean;
  /** Database name in the URLs. Default `regional`. */
  database?: string;
  /** Wipe the data directory first. */
  fresh?: boolean;
  /** Extra Postgres settings for every server (`-c name=value`). */
  postgresSettings?: Readonly<Record<string, string>>;
  /** Receives one line per start-up step, for progress displays. */
  onProgress?: (message: string) => void;
  /**
   * Also start Redis (see {@link LocalCluster.redis}): the primary in the primary region, a
   * replica in every other region replicating through the latency link, and a cache instance
   * per region. Needs `redis-server` (the Debian package `redis-server`, or Homebrew's `redis`).
   */
  redis?: boolean;
}

/** What an app instance in one region is configured with. */
export interface RegionEndpoints {
  region: string;
  role: 'primary' | 'replica';
  /** The primary, as reached from this region (through the latency link from replica regions). */
  databaseUrl: string;
  /** This region's replica (`null` in the primary region). */
  replicaUrl: string | null;
  /** Redis URLs, when the cluster runs Redis. */
  redis?: RedisEndpoints;
}

/** Everything that must persist between runs of a cluster in one directory. */
interface ClusterState {
  format: 1;
  postgresMajor: number;
  primaryRegion: string;
  user: string;
  password: string;
  database: string;
  ports: Record<string, number>;
}

/** Temporary clusters live in folders named like this in the system temp folder. */
export const TEMP_PREFIX = 'regional-cluster-';
const STATE_FILE = 'cluster.json';
const OWNER_FILE = 'owner.pid';
const SUPERUSER = 'regional';

/** The servers of every cluster started by this process, stopped if it exits without `stop()`. */
const liveServers = new Set<{ stopSync(): void }>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const server of liveServers) server.stopSync();
  });
}

const slotName = (region: string) => `regional_${region.replace(/-/g, '_')}`;

/** A cut or a restore of the proxies whose name contains `filter` (`''`: all of them). */
interface LinkRule {
  filter: string;
  state: 'up' | CutMode;
}

/**
 * A link between two regions: every proxy that crosses it shares its delay and its cuts.
 * Proxies are named `<from>-><to> <kind>`, e.g. `syd->iad replication`, `syd->iad postgres`,
 * `syd->iad app`, `syd->iad edge`; a `filter` selects those whose name contains it.
 *
 * Cuts, restores and round trips are kept as rules, in order: each proxy, also one added
 * later (an app's or the edge's path, made on first use), follows the last rule whose filter
 * its name contains. So a filtered cut also cuts the matching proxies added while it lasts,
 * and leaves every other proxy alone. A call without a filter replaces every rule of its kind.
 *
 * @example
 * const link = cluster.link('iad', 'syd');
 * await link.cut('hang', 'replication'); // replication stops; apps still reach the primary
 * await link.restore('replication');
 * await link.cut('refuse'); // the whole link, and every path made on it from now on
 * await link.restore('edge'); // ... except the edge's paths
 * await link.restore(); // everything
 * link.setRtt(2_000, 'replication'); // a slow replication connection only
 */
let addProxy: (link: RegionLink, proxy: LatencyProxy) => Promise<void>;

export class RegionLink {
  readonly proxies: LatencyProxy[] = [];
  private cuts: LinkRule[] = [];
  private rtts: { filter: string; ms: number }[] = [];

  constructor(
    readonly a: string,
    readonly b: string,
    private rtt: number,
  ) {}

  /** Round trip in milliseconds (of the whole link; see {@link rttOf} for a filtered one). */
  get rttMs(): number {
    return this.rtt;
  }

  /** The whole link's state: a filtered cut does not change it (see {@link stateOf}). */
  get state(): 'up' | CutMode {
    return this.cuts[0]?.filter === '' ? this.cuts[0].state : 'up';
  }

  /** What a proxy named `name` follows now: `up`, or the mode of the cut that holds it. */
  stateOf(name: string): 'up' | CutMode {
    return lastMatching(this.cuts, name)?.state ?? 'up';
  }

  /** The round trip a proxy named `name` gets, in milliseconds. */
  rttOf(name: string): number {
    return lastMatching(this.rtts, name)?.ms ?? this.rtt;
  }

  /**
   * Changes the round trip for traffic from now on: of the whole link, or (with `filter`) of
   * the proxies whose name contains it, including those added later.
   */
  setRtt(ms: number, filter?: string): void {
    if (!(ms >= 0))
      throw new RangeError(`link ${this.a}-${this.b}: round trip must be >= 0 ms, got ${ms}`);
    if (filter) {
      this.rtts = [...this.rtts.filter((r) => r.filter !== filter), { filter, ms }];
    } else {
      this.rtt = ms;
      this.rtts = [];
    }
    for (const proxy of this.proxies) proxy.setDelay(this.rttOf(proxy.name) / 2);
  }

  /**
   * Cuts the link, or (with `filter`) the proxies whose name contains it, including those
   * added while the cut lasts: `hang` holds all traffic, `refuse` resets connections and
   * refuses new ones.
   */
  async cut(mode: CutMode = 'refuse', filter?: string): Promise<void> {
    if (mode !== 'hang' && mode !== 'refuse')
      throw new TypeError(`cut mode must be 'hang' or 'refuse', got ${mode}`);
    await this.rule({ filter: filter ?? '', state: mode });
  }

  /**
   * Restores a cut link, or (with `filter`) the proxies whose name contains it; traffic held
   * by a `hang` cut is delivered.
   */
  async restore(filter?: string): Promise<void> {
    await this.rule({ filter: filter ?? '', state: 'up' });
  }

  /** Counters summed over this link's proxies, or of the proxies whose name contains `filter`. */
  stats(filter?: string): ProxyStats {
    const total: ProxyStats = {
      connections: 0,
      openConnections: 0,
      bytesForward: 0,
      bytesBackward: 0,
      roundTrips: 0,
    };
    for (const proxy of this.proxies) {
      if (filter && !proxy.name.includes(filter)) continue;
      const s = proxy.stats();
      for (const key of Object.keys(total) as (keyof ProxyStats)[]) total[key] += s[key];
    }
    return total;
  }

  resetStats(): void {
    for (const proxy of this.proxies) proxy.resetStats();
  }

  static {
    // The cluster puts proxies on links and takes them off; nobody else does.
    addProxy = async (link, proxy) => {
      link.proxies.push(proxy);
      if (lastMatching(link.rtts, proxy.name)) proxy.setDelay(link.rttOf(proxy.name) / 2);
      await applyState(proxy, link.stateOf(proxy.name));
    };
  }

  private async rule(rule: LinkRule): Promise<void> {
    // Without a filter the rule covers every proxy: earlier ones no longer matter.
    if (rule.filter === '') this.cuts = rule.state === 'up' ? [] : [rule];
    else this.cuts = [...this.cuts.filter((r) => r.filter !== rule.filter), rule];
    // A filtered restore with nothing left to override is no rule at all.
    if (rule.state === 'up' && this.cuts.length === 1) this.cuts = [];
    await Promise.all(this.proxies.map((proxy) => applyState(proxy, this.stateOf(proxy.name))));
  }
}

function lastMatching<T extends { filter: string }>(rules: readonly T[], name: string) {
  for (let i = rules.length - 1; i >= 0; i--) {
    const rule = rules[i] as T;
    if (name.includes(rule.filter)) return rule;
  }
  return undefined;
}

/** Brings a proxy to `state` (from any other: a cut of another mode is restored first). */
async function applyState(proxy: LatencyProxy, state: 'up' | CutMode): Promise<void> {
  if (proxy.state === state) return;
  if (proxy.state !== 'up') await proxy.restore();
  if (state !== 'up') await proxy.cut(state);
}

/**
 * A real multi-region Postgres cluster on this machine: a primary in the primary region, a
 * streaming replica (hot standby) in every other region, and latency links between regions
 * through which every cross-region connection, replication included, travels.
 *
 * @example
 * const cluster = await LocalCluster.start({ dir: '/tmp/my-cluster', rttMs: { syd: 100 } });
 * const syd = cluster.endpoints('syd'); // { databaseUrl, replicaUrl, ... }
 * await cluster.pauseReplay('syd');
 * await cluster.link('iad', 'syd').cut('hang');
 * await cluster.stop();
 */
export class LocalCluster {
  readonly dir: string;
  readonly topology: Topology;
  private readonly servers = new Map<string, PostgresServer>();
  private readonly links = new Map<string, RegionLink>();
  /** Paths made by `route`, by port: only these does `unroute` close. */
  private readonly routes = new Map<number, { link: RegionLink; proxy: LatencyProxy }>();
  /** Per replica region: the proxy the app uses and the one replication uses to reach the primary. */
  private readonly primaryProxies = new Map<
    string,
    { app: LatencyProxy; replication: LatencyProxy }
  >();
  private readonly watchdog = new Watchdog();
  private readonly adminPools = new Map<string, pg.Pool>();
  private localRedis: LocalRedis | null = null;
  private stopped = false;

  private constructor(
    topology: Topology,
    dir: string,
    private state: ClusterState,
    private readonly binaries: PostgresBinaries,
    private readonly user: ServerUser | null,
    private readonly options: LocalClusterOptions,
    private readonly redisBinary: RedisBinary | null,
  ) {
    this.topology = topology;
    this.dir = dir;
  }

  /** Starts (or restarts) a cluster; the first start in a directory runs `initdb`. */
  static async start(options: LocalClusterOptions = {}): Promise<LocalCluster> {
    const topology = resolveTopology(options);
    // Before anything starts: without redis-server, say how to install it.
    const redisBinary = options.redis ? findRedisServer() : null;
    const dir = options.temporary
      ? mkdtempSync(path.join(os.tmpdir(), TEMP_PREFIX))
      : path.resolve(options.dir ?? '.regional');
    const progress = options.onProgress ?? (() => {});
    const user = resolveServerUser();
    const binaries = binariesUsableBy(findPostgresBinaries(), user);

    if (options.fresh) rmSync(dir, { recursive: true, force: true });
    mkdirSync(path.join(dir, 'logs'), { recursive: true });
    claimDirectory(dir);
    try {
      if (user) {
        chownSync(dir, user.uid, user.gid);
        assertWritableBy(user, dir);
      }
      const state = await prepareState(dir, topology, binaries, user, options, progress);
      const cluster = new LocalCluster(topology, dir, state, binaries, user, options, redisBinary);
      installExitHook();
      try {
        await cluster.boot(progress);
      } catch (error) {
        await cluster.stop().catch(() => {});
        throw error;
      }
      return cluster;
    } catch (error) {
      releaseDirectory(dir);
      throw error;
    }
  }

  get primaryRegion(): string {
    return this.topology.primaryRegion;
  }

  /** The configuration of an app instance in `region`. */
  endpoints(region: string): RegionEndpoints {
    this.assertRegion(region);
    const primaryPort =
      region === this.primaryRegion
        ? this.server(this.primaryRegion).port
        : this.proxiesFor(region).app.port;
    return {
      region,
      role: region === this.primaryRegion ? 'primary' : 'replica',
      databaseUrl: this.url(primaryPort),
      replicaUrl: region === this.primaryRegion ? null : this.url(this.server(region).port),
      ...(this.localRedis ? { redis: this.localRedis.endpoints(region) } : {}),
    };
  }

  /** Endpoints of every region, the primary first. */
  get regions(): RegionEndpoints[] {
    return [this.primaryRegion, ...this.topology.replicaRegions].map((r) => this.endpoints(r));
  }

  /** The environment an app instance in `region` runs with. */
  env(region: string): Record<string, string> {
    const endpoints = this.endpoints(region);
    return {
      PRIMARY_REGION: this.primaryRegion,
      REGION: region,
      DATABASE_URL: endpoints.databaseUrl,
      ...(endpoints.replicaUrl ? { DATABASE_REPLICA_URL: endpoints.replicaUrl } : {}),
      ...this.localRedis?.env(region),
    };
  }

  /**
   * The cluster's Redis servers (started with `{ redis: true }`): endpoints, servers to stop,
   * start or kill, replication to pause, and each server's replication state.
   *
   * @example
   * const cluster = await LocalCluster.start({ temporary: true, redis: true });
   * cluster.env('syd'); // ... REDIS_URL, REDIS_REPLICA_URL, REDIS_CACHE_URL
   * await cluster.redis.server('syd', 'replica').stop();
   * await cluster.redis.pauseReplication('syd');
   */
  get redis(): LocalRedis {
    if (!this.localRedis) {
      throw new Error(
        'This cluster runs no Redis: start it with LocalCluster.start({ redis: true }) (regional dev --redis)',
      );
    }
    return this.localRedis;
  }

  /** A superuser URL of the server in `region` itself (primary or replica), same-region. */
  serverUrl(region: string): string {
    return this.url(this.server(region).port);
  }

  /** The server process of `region`: the primary in the primary region, else the replica. */
  server(region: string): PostgresServer {
    const server = this.servers.get(region);
    if (!server)
      throw new Error(
        `No region "${region}" in this cluster (regions: ${this.topology.regions.join(', ')})`,
      );
    return server;
  }

  /** The latency link between two regions. */
  link(a: string, b: string): RegionLink {
    this.assertRegion(a);
    this.assertRegion(b);
    if (a === b) throw new Error(`link(${a}, ${b}): a region has no link to itself`);
    const key = pairKey(a, b);
    let link = this.links.get(key);
    if (!link) {
      link = new RegionLink(a < b ? a : b, a < b ? b : a, this.topology.rttMs(a, b));
      this.links.set(key, link);
    }
    return link;
  }

  /**
   * A path from region `from` to a TCP service in region `to`: the port to connect to.
   * Across regions it is a new proxy on the link between them; within a region, the service's
   * own port. Use it for app-to-app and edge-to-app traffic.
   *
   * @example
   * const port = await cluster.route({ from: 'syd', to: 'iad', port: iadAppPort, name: 'http' });
   */
  async route(route: {
    from: string;
    to: string;
    port: number;
    name: string;
    host?: string;
  }): Promise<number> {
    if (route.from === route.to) return route.port;
    const link = this.link(route.from, route.to);
    const proxy = new LatencyProxy({
      name: `${route.from}->${route.to} ${route.name}`,
      targetHost: route.host ?? '127.0.0.1',
      targetPort: route.port,
      oneWayMs: link.rttMs / 2,
    });
    await proxy.listen();
    await addProxy(link, proxy);
    this.routes.set(proxy.port, { link, proxy });
    return proxy.port;
  }

  /**
   * Closes a path made by `route`, with its open connections, and takes it off its link.
   * Whoever made a path closes it when done (apps restarting would otherwise leave one open
   * per start until the cluster stops). A port that is no path of this cluster's — such as the
   * service's own port `route` returns within a region — is left alone.
   *
   * @returns whether a path was closed
   * @example
   * const port = await cluster.route({ from: 'syd', to: 'iad', port: iadAppPort, name: 'http' });
   * // ... the syd app talks to iad's through `port`
   * await cluster.unroute(port);
   */
  async unroute(port: number): Promise<boolean> {
    const route = this.routes.get(port);
    if (!route) return false;
    this.routes.delete(port);
    // Off the link (its counters with it); closed next.
    const at = route.link.proxies.indexOf(route.proxy);
    if (at >= 0) route.link.proxies.splice(at, 1);
    await route.proxy.close();
    return true;
  }

  /** Runs one statement on the server in `region` (itself, not through a link) as the superuser. */
  async query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    region: string,
    text: string,
    values?: unknown[],
  ): Promise<pg.QueryResult<R>> {
    const pool = this.adminPool(region);
    try {
      return await pool.query<R>(text, values);
    } catch (error) {
      // A pooled connection to a server that was restarted since is dead; try a fresh one once.
      if (!isConnectionError(error)) throw error;
      return await pool.query<R>(text, values);
    }
  }

  /** The primary's WAL flush position. */
  async primaryLsn(): Promise<Lsn> {
    const { rows } = await this.query<{ lsn: string }>(
      this.primaryRegion,
      'SELECT pg_current_wal_flush_lsn()::text AS lsn',
    );
    return parseLsn((rows[0] as { lsn: string }).lsn);
  }

  /** How far the replica in `region` has replayed WAL. */
  async replayLsn(region: string): Promise<Lsn> {
    this.assertReplica(region);
    const { rows } = await this.query<{ lsn: string | null }>(
      region,
      'SELECT pg_last_wal_replay_lsn()::text AS lsn',
    );
    const text = rows[0]?.lsn;
    if (!text) throw new Error(`${region}: the replica reports no replay position`);
    return parseLsn(text);
  }

  /** Resolves once the replica in `region` has replayed `lsn` (default: the primary's position now). */
  async waitForReplay(region: string, lsn?: Lsn, timeoutMs = 30_000): Promise<void> {
    const target = lsn ?? (await this.primaryLsn());
    const deadline = Date.now() + timeoutMs;
    while ((await this.replayLsn(region)) < target) {
      if (Date.now() > deadline) {
        throw new Error(
          `${region}: replica did not replay ${formatLsn(target)} within ${timeoutMs} ms`,
        );
      }
      await sleep(1);
    }
  }

  /** Pauses WAL replay on the replica in `region`: it keeps receiving WAL but falls behind. */
  async pauseReplay(region: string): Promise<void> {
    this.assertReplica(region);
    await this.query(region, 'SELECT pg_wal_replay_pause()');
  }

  async resumeReplay(region: string): Promise<void> {
    this.assertReplica(region);
    await this.query(region, 'SELECT pg_wal_replay_resume()');
  }

  /** Bytes of WAL the replica in `region` has not replayed yet. */
  async lagBytes(region: string): Promise<bigint> {
    const [primary, replay] = await Promise.all([this.primaryLsn(), this.replayLsn(region)]);
    return primary > replay ? primary - replay : 0n;
  }

  /**
   * Writes a little WAL on the primary and times how long until each replica has replayed it:
   * the replication lag right now, per replica region, in milliseconds (`null` if it did not
   * arrive within `timeoutMs`, e.g. while replay is paused).
   */
  async measureLag(timeoutMs = 5_000): Promise<Record<string, number | null>> {
    const target = await this.emitWal();
    const started = performance.now();
    const out: Record<string, number | null> = {};
    await Promise.all(
      this.topology.replicaRegions.map(async (region) => {
        try {
          await this.waitForReplay(region, target, timeoutMs);
          out[region] = Math.round(performance.now() - started);
        } catch {
          out[region] = null;
        }
      }),
    );
    return out;
  }

  /** Resolves once every replica (or those named) streams from the primary. */
  async waitForStreaming(
    timeoutMs = 30_000,
    regions = this.topology.replicaRegions,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { rows } = await this.query<{ application_name: string }>(
        this.primaryRegion,
        "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'",
      );
      const streaming = new Set(rows.map((row) => row.application_name));
      const waiting = regions.filter((region) => !streaming.has(region));
      if (waiting.length === 0) return;
      if (Date.now() > deadline) {
        throw new Error(
          `Replica${waiting.length > 1 ? 's' : ''} ${waiting.join(', ')} not streaming after ${timeoutMs} ms`,
        );
      }
      await sleep(20);
    }
  }

  /** Writes a WAL record on the primary, flushed, and returns its end position. */
  private async emitWal(): Promise<Lsn> {
    const { rows } = await this.query<{ lsn: string }>(
      this.primaryRegion,
      "SELECT pg_logical_emit_message(false, 'regional', 'probe', true)::text AS lsn",
    );
    return parseLsn((rows[0] as { lsn: string }).lsn);
  }

  /** A JSON summary: the primary region and each region's URLs. */
  toJSON(): {
    primaryRegion: string;
    regions: Record<
      string,
      { databaseUrl: string; replicaUrl: string | null; redis?: RedisEndpoints }
    >;
  } {
    const regions: Record<
      string,
      { databaseUrl: string; replicaUrl: string | null; redis?: RedisEndpoints }
    > = {};
    for (const r of this.regions) {
      regions[r.region] = {
        databaseUrl: r.databaseUrl,
        replicaUrl: r.replicaUrl,
        ...(r.redis ? { redis: r.redis } : {}),
      };
    }
    return { primaryRegion: this.primaryRegion, regions };
  }

  /** Stops every server cleanly and closes the links. Data is kept for the next start. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.localRedis?.stop();
    await Promise.all(
      [...this.servers.values()].map(async (server) => {
        await server.stop();
        liveServers.delete(server);
      }),
    );
    await Promise.all([...this.adminPools.values()].map((pool) => pool.end().catch(() => {})));
    await Promise.all(
      [...this.links.values()].flatMap((link) => link.proxies.map((proxy) => proxy.close())),
    );
    this.watchdog.close();
    releaseDirectory(this.dir);
    if (this.options.temporary) rmSync(this.dir, { recursive: true, force: true });
  }

  private adminPool(region: string): pg.Pool {
    const port = this.server(region).port;
    const key = `${region}:${port}`;
    let pool = this.adminPools.get(key);
    if (!pool) {
      pool = new pg.Pool({ connectionString: this.url(port), max: 4, idleTimeoutMillis: 5_000 });
      // Idle connections die when a fault test stops or kills the server; that is expected.
      pool.on('error', () => {});
      this.adminPools.set(key, pool);
    }
    return pool;
  }

  private url(port: number): string {
    return `postgres://${this.state.user}:${this.state.password}@127.0.0.1:${port}/${this.state.database}`;
  }

  private proxiesFor(region: string): { app: LatencyProxy; replication: LatencyProxy } {
    const proxies = this.primaryProxies.get(region);
    if (!proxies) throw new Error(`${region} is not a replica region`);
    return proxies;
  }

  private assertRegion(region: string): void {
    if (!this.topology.regions.includes(region)) {
      throw new Error(
        `No region "${region}" in this cluster (regions: ${this.topology.regions.join(', ')})`,
      );
    }
  }

  private assertReplica(region: string): void {
    this.assertRegion(region);
    if (region === this.primaryRegion)
      throw new Error(`${region} is the primary region; it has no replica`);
  }

  private dataDir(region: string): string {
    return path.join(this.dir, 'pg', region);
  }

  private newServer(region: string, port: number): PostgresServer {
    const primary = region === this.primaryRegion;
    const server: PostgresServer = new PostgresServer({
      name: `${region} ${primary ? 'primary' : 'replica'}`,
      dataDir: this.dataDir(region),
      port,
      binaries: this.binaries,
      user: this.user,
      logFile: path.join(this.dir, 'logs', `${region}.log`),
      watchdog: this.watchdog,
      settings: () => ({
        ...baseSettings(region),
        ...(primary ? {} : this.replicaSettings(region)),
        ...this.options.postgresSettings,
      }),
    });
    this.servers.set(region, server);
    liveServers.add(server);
    return server;
  }

  private replicaSettings(region: string): Record<string, string> {
    const { replication } = this.proxiesFor(region);
    const conninfo = [
      'host=127.0.0.1',
      `port=${replication.port}`,
      `user=${this.state.user}`,
      `password=${this.state.password}`,
      `application_name=${region}`,
      'connect_timeout=5',
    ].join(' ');
    return { primary_conninfo: conninfo, primary_slot_name: slotName(region) };
  }

  private async boot(progress: (message: string) => void): Promise<void> {
    const { primaryRegion, replicaRegions } = this.topology;
    const ports = this.state.ports;

    const primary = this.newServer(
      primaryRegion,
      await reusePort(ports[`postgres:${primaryRegion}`]),
    );
    const missing = replicaRegions.filter(
      (region) => !existsSync(path.join(this.dataDir(region), 'PG_VERSION')),
    );
    if (missing.length > 0) {
      // A replica is a copy of a cleanly stopped primary; its slot must exist first so the
      // primary keeps every WAL segment the replica will ask for.
      progress(`creating replica${missing.length > 1 ? 's' : ''} ${missing.join(', ')}`);
      await startWithPortRetry(primary);
      await this.ensureDatabaseAndSlots(missing);
      await primary.stop();
      for (const region of missing) this.copyPrimaryTo(region);
    }

    progress(`starting ${primaryRegion} primary`);
    await startWithPortRetry(primary);
    ports[`postgres:${primaryRegion}`] = primary.port;
    await this.ensureDatabaseAndSlots(replicaRegions);

    for (const region of replicaRegions) {
      this.primaryProxies.set(region, {
        app: await this.primaryProxy(region, 'postgres', primary.port),
        replication: await this.primaryProxy(region, 'replication', primary.port),
      });
    }

    await Promise.all(
      replicaRegions.map(async (region) => {
        progress(`starting ${region} replica`);
        const replica = this.newServer(region, await reusePort(ports[`postgres:${region}`]));
        await startWithPortRetry(replica);
        ports[`postgres:${region}`] = replica.port;
      }),
    );
    writeState(this.dir, this.state);

    if (replicaRegions.length > 0) {
      progress('waiting for replication to stream');
      await this.waitForStreaming(60_000);
      const target = await this.emitWal();
      await Promise.all(replicaRegions.map((region) => this.waitForReplay(region, target, 60_000)));
    }

    if (this.redisBinary) {
      this.localRedis = await LocalRedis.start({
        dir: this.dir,
        topology: this.topology,
        binary: this.redisBinary,
        user: this.user,
        watchdog: this.watchdog,
        password: this.state.password,
        ports,
        proxy: (region, kind, port) => this.primaryProxy(region, kind, port),
        live: liveServers,
        progress,
      });
      writeState(this.dir, this.state);
    }
  }

  /**
   * A proxy on the link between a replica region and the primary region to a service of the
   * primary region, on the same port as last run when it is free.
   */
  private async primaryProxy(
    region: string,
    kind: string,
    targetPort: number,
  ): Promise<LatencyProxy> {
    const { primaryRegion } = this.topology;
    const key = `proxy:${region}->${primaryRegion}:${kind}`;
    const proxy = new LatencyProxy({
      name: `${region}->${primaryRegion} ${kind}`,
      targetPort,
      oneWayMs: this.topology.rttMs(region, primaryRegion) / 2,
      port: await reusePort(this.state.ports[key]),
    });
    await proxy.listen();
    this.state.ports[key] = proxy.port;
    await addProxy(this.link(region, primaryRegion), proxy);
    return proxy;
  }

  private async ensureDatabaseAndSlots(regions: readonly string[]): Promise<void> {
    const admin = new pg.Client({
      connectionString: this.url(this.server(this.primaryRegion).port).replace(
        /\/[^/]*$/,
        '/postgres',
      ),
    });
    await admin.connect();
    try {
      const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [
        this.state.database,
      ]);
      if (exists.rowCount === 0)
        await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(this.state.database)}`);
      for (const region of regions) {
        await admin.query(
          `SELECT pg_create_physical_replication_slot($1, true)
           WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)`,
          [slotName(region)],
        );
      }
    } finally {
      await admin.end();
    }
  }

  private copyPrimaryTo(region: string): void {
    const source = this.dataDir(this.primaryRegion);
    const target = this.dataDir(region);
    rmSync(target, { recursive: true, force: true });
    // `cp -a` keeps owner and modes, which Postgres checks on its data directory.
    execFileSync('cp', ['-a', source, target]);
    for (const file of ['postmaster.pid', 'postmaster.opts'])
      rmSync(path.join(target, file), { force: true });
    const slots = path.join(target, 'pg_replslot');
    for (const entry of readdirSync(slots))
      rmSync(path.join(slots, entry), { recursive: true, force: true });
    const signal = path.join(target, 'standby.signal');
    writeFileSync(signal, '');
    if (this.user) chownSync(signal, this.user.uid, this.user.gid);
  }
}

const CONNECTION_ERROR_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  '57P01',
  '57P02',
  '57P03',
]);
/** True for a broken connection (pg reports some without a code), false for an SQL error. */
function isConnectionError(error: unknown): boolean {
  const code = (error as { code?: string }).code;
  return code === undefined || CONNECTION_ERROR_CODES.has(code);
}

/** Settings every server runs with; passed on the command line so no config file is edited. */
function baseSettings(region: string): Record<string, string> {
  return {
    listen_addresses: '127.0.0.1',
    unix_socket_directories: '',
    cluster_name: `regional-${region}`,
    max_connections: '300',
    shared_buffers: '64MB',
    wal_level: 'replica',
    max_wal_senders: '16',
    max_replication_slots: '16',
    wal_keep_size: '256MB',
    max_slot_wal_keep_size: '4GB',
    hot_standby: 'on',
    hot_standby_feedback: 'on',
    // A replica whose replication connection broke retries after this long; the default 5 s
    // would make a restored link look like a multi-second outage.
    wal_retrieve_retry_interval: '100ms',
    wal_receiver_status_interval: '1s',
    logging_collector: 'off',
    log_line_prefix: '%m [%p] ',
    log_min_messages: 'warning',
  };
}

async function startWithPortRetry(server: PostgresServer): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await server.start();
      return;
    } catch (error) {
      // Another process took the port between our check and the server binding it.
      if (attempt >= 3 || !/could not (bind|create listen socket)/i.test(server.logTail(5)))
        throw error;
      server.port = await reusePort(undefined);
    }
  }
}

function readState(dir: string): ClusterState | null {
  try {
    return JSON.parse(readFileSync(path.join(dir, STATE_FILE), 'utf8')) as ClusterState;
  } catch {
    return null;
  }
}

function writeState(dir: string, state: ClusterState): void {
  writeFileSync(path.join(dir, STATE_FILE), `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
}

/** Directories whose cluster this process runs. */
const claimedDirectories = new Set<string>();

/** One cluster at a time may run in a directory. */
function claimDirectory(dir: string): void {
  const file = path.join(dir, OWNER_FILE);
  const owner = existsSync(file) ? Number(readFileSync(file, 'utf8')) : 0;
  const ours = owner === process.pid && claimedDirectories.has(dir);
  if (ours || (owner && owner !== process.pid && isAlive(owner))) {
    throw new Error(
      `The cluster in ${dir} is already running in process ${owner}. Stop that process, or use another directory (--dir).`,
    );
  }
  writeFileSync(file, String(process.pid));
  claimedDirectories.add(dir);
}

function releaseDirectory(dir: string): void {
  claimedDirectories.delete(dir);
  try {
    const file = path.join(dir, OWNER_FILE);
    if (Number(readFileSync(file, 'utf8')) === process.pid) unlinkSync(file);
  } catch {
    // Already gone.
  }
}

async function prepareState(
  dir: string,
  topology: Topology,
  binaries: PostgresBinaries,
  user: ServerUser | null,
  options: LocalClusterOptions,
  progress: (message: string) => void,
): Promise<ClusterState> {
  const pgDir = path.join(dir, 'pg');
  let state = readState(dir);
  if (state) {
    if (state.primaryRegion !== topology.primaryRegion) {
      throw new Error(
        `${dir} holds a cluster whose primary region is ${state.primaryRegion}, not ${topology.primaryRegion}. ` +
          'Use another directory (--dir), or start afresh (--fresh deletes its data).',
      );
    }
    if (state.postgresMajor !== binaries.major) {
      throw new Error(
        `${dir} holds data of Postgres ${state.postgresMajor}, but Postgres ${binaries.major} is installed. ` +
          'Start afresh (--fresh deletes its data) or use another directory.',
      );
    }
    if (options.database && options.database !== state.database) state.database = options.database;
  }

  // Servers left running by a run that died without stopping them: stop them, don't duplicate.
  if (existsSync(pgDir)) {
    for (const region of readdirSync(pgDir)) {
      const pid = readPostmasterPid(path.join(pgDir, region))?.pid;
      if (pid && isAlive(pid)) {
        progress(`stopping a leftover ${region} server (pid ${pid}) from an earlier run`);
        await stopPostmaster(pid);
      }
    }
  }

  if (state && existsSync(path.join(pgDir, topology.primaryRegion, 'PG_VERSION'))) return state;

  // First start (or an initdb that never finished): create the primary from scratch.
  rmSync(pgDir, { recursive: true, force: true });
  mkdirSync(pgDir, { recursive: true });
  if (user) chownSync(pgDir, user.uid, user.gid);
  state = {
    format: 1,
    postgresMajor: binaries.major,
    primaryRegion: topology.primaryRegion,
    user: SUPERUSER,
    password: randomBytes(18).toString('hex'),
    database: options.database ?? 'regional',
    ports: {},
  };
  progress(`initdb: creating the ${topology.primaryRegion} primary (Postgres ${binaries.version})`);
  const pwfile = path.join(dir, 'initdb.pw');
  writeFileSync(pwfile, state.password, { mode: 0o600 });
  if (user) chownSync(pwfile, user.uid, user.gid);
  try {
    execFileSync(
      binaries.initdb,
      [
        '-D',
        path.join(pgDir, topology.primaryRegion),
        '-U',
        SUPERUSER,
        `--pwfile=${pwfile}`,
        '--auth=scram-sha-256',
        '--encoding=UTF8',
        '--locale=C',
        '--no-sync',
      ],
      {
        stdio: 'pipe',
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' },
        ...(user ? { uid: user.uid, gid: user.gid } : {}),
      },
    );
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString() ?? '';
    throw new Error(`initdb failed: ${(error as Error).message}\n${stderr}`);
  } finally {
    rmSync(pwfile, { force: true });
  }
  writeState(dir, state);
  return state;
}
