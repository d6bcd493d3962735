import path from 'node:path';
import { redactUrl } from '../core/config.js';
import { LocalApps } from '../edge/apps.js';
import { LocalEdge } from '../edge/edge.js';
import type { ReplayMode } from '../http/settings.js';
import { LocalCluster } from '../testing/cluster.js';
import { parseRttList } from '../testing/topology.js';
import { onShutdownSignal, progressReporter, table, UsageError } from './shared.js';

export interface DevOptions {
  regions?: string;
  primary?: string;
  rtt?: string;
  dir?: string;
  json?: boolean;
  fresh?: boolean;
  /** A command starting one app instance (per region, behind the local edge). */
  app?: string;
  /** `REGIONAL_REPLAY_MODE` of the app instances. */
  replay?: string;
  /** Also start Redis: a primary, a replica per other region, a cache per region. */
  redis?: boolean;
}

const REPLAY_MODES: readonly string[] = ['fly-replay', 'proxy'];

/** The app instances and the edge in front of them, for `--app`. */
async function startApps(
  cluster: LocalCluster,
  command: string,
  mode: ReplayMode | undefined,
  progress: (message: string) => void,
): Promise<{ apps: LocalApps; edge: LocalEdge }> {
  progress(`starting the app in ${cluster.topology.regions.join(', ')}: ${command}`);
  const apps = await LocalApps.start({
    command,
    cluster,
    mode,
    // App output goes to stderr, so that stdout stays one line of JSON with --json.
    onOutput: (region, line) => process.stderr.write(`[app ${region}] ${line}\n`),
  });
  try {
    const edge = await LocalEdge.start({ apps: apps.edgeApps(), links: cluster });
    return { apps, edge };
  } catch (error) {
    await apps.stop();
    throw error;
  }
}

export const parseRegionList = (text: string | undefined): string[] | undefined =>
  text === undefined
    ? undefined
    : text
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);

const displayPath = (dir: string) => {
  const relative = path.relative(process.cwd(), dir);
  return relative.startsWith('..') || path.isAbsolute(relative) ? dir : relative || '.';
};

/** `regional dev`: starts the local multi-region cluster and keeps it up until interrupted. */
export async function dev(options: DevOptions): Promise<void> {
  if (options.replay !== undefined && !REPLAY_MODES.includes(options.replay))
    throw new UsageError(`--replay: must be fly-replay or proxy, got "${options.replay}"`);
  if (options.replay !== undefined && options.app === undefined)
    throw new UsageError('--replay: only applies to app instances started with --app');
  if (options.app !== undefined && !options.app.trim())
    throw new UsageError(
      '--app: give the command that starts one app instance, e.g. --app "node server.js"',
    );
  const progress = progressReporter('dev');
  const started = performance.now();
  const cluster = await LocalCluster.start({
    regions: parseRegionList(options.regions),
    primaryRegion: options.primary,
    rttMs: options.rtt === undefined ? undefined : parseRttList(options.rtt),
    dir: options.dir,
    fresh: options.fresh,
    redis: options.redis,
    onProgress: progress,
  });
  let running: { apps: LocalApps; edge: LocalEdge } | null = null;
  if (options.app !== undefined) {
    try {
      running = await startApps(
        cluster,
        options.app,
        options.replay as ReplayMode | undefined,
        progress,
      );
    } catch (error) {
      await cluster.stop();
      throw error;
    }
  }
  onShutdownSignal(async () => {
    progress('stopping');
    await running?.edge.close();
    await running?.apps.stop();
    await cluster.stop();
    progress('stopped');
  });
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  if (options.json) {
    process.stdout.write(
      `${JSON.stringify({ ...cluster.toJSON(), ...(running ? { entries: running.edge.entries } : {}), dir: cluster.dir, readyMs: Math.round(performance.now() - started) })}\n`,
    );
    progress(`ready in ${seconds}s; Ctrl-C stops`);
    return;
  }
  // The table is for people (and their terminal's scrollback): passwords hidden. `--json`, for
  // scripts that connect, keeps the full URLs.
  const lag = await cluster.measureLag();
  const rows = [['region', 'role', 'primary URL (from this region)', 'replica URL', 'replica lag']];
  for (const r of cluster.regions) {
    const regionLag = lag[r.region];
    rows.push([
      r.region,
      r.role,
      redactUrl(r.databaseUrl),
      r.replicaUrl ? redactUrl(r.replicaUrl) : '-',
      r.role === 'primary'
        ? '-'
        : regionLag === null || regionLag === undefined
          ? 'not replaying'
          : `${regionLag} ms`,
    ]);
  }
  const redisRows = [
    ['region', 'REDIS_URL (primary, from this region)', 'REDIS_REPLICA_URL', 'REDIS_CACHE_URL'],
  ];
  for (const r of cluster.regions) {
    if (!r.redis) continue;
    redisRows.push([
      r.region,
      redactUrl(r.redis.redisUrl),
      r.redis.redisReplicaUrl ? redactUrl(r.redis.redisReplicaUrl) : '-',
      redactUrl(r.redis.redisCacheUrl),
    ]);
  }
  const { regions } = cluster.topology;
  const links = regions.flatMap((a, i) =>
    regions.slice(i + 1).map((b) => `${a}-${b} ${cluster.topology.rttMs(a, b)} ms`),
  );
  process.stdout.write(
    [
      `Regional dev cluster ready in ${seconds}s (data in ${displayPath(cluster.dir)})`,
      '',
      table(rows),
      '',
      ...(redisRows.length > 1 ? ['Redis:', '', table(redisRows), ''] : []),
      `Round trips: ${links.join(', ') || 'none (one region)'}`,
      ...(running ? ['', appTable(running), ''] : []),
      'Press Ctrl-C to stop.',
      '',
    ].join('\n'),
  );
}

/** The entry URL clients in each region use, and the instance behind it. */
function appTable({ apps, edge }: { apps: LocalApps; edge: LocalEdge }): string {
  const rows = [['region', 'entry URL (the edge)', 'app instance']];
  for (const { region, port, pid } of apps.list()) {
    rows.push([region, edge.url(region), `pid ${pid}, port ${port}`]);
  }
  return table(rows);
}
