import path from 'node:path';
import { redactUrl } from '../core/config.js';
import { Dashboard, type DashboardProbe, localRegions } from '../dashboard/server.js';
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
  /** With `--app`: the path the dashboard GETs in every region (default `/`). */
  dashboardRead?: string;
  /** With `--app`: the dashboard's write, `METHOD /path {json with {marker}}`. */
  dashboardWrite?: string;
}

const MARKER = '{marker}';

/**
 * `--dashboard-write 'POST /posts {"body":"{marker}"}'`: the dashboard's write button sends
 * that JSON, with `{marker}` replaced by a unique text it then looks for in every region.
 */
export function parseDashboardWrite(spec: string): NonNullable<DashboardProbe['write']> {
  const match = /^\s*(POST|PUT|PATCH)\s+(\/\S*)\s+(.+)$/s.exec(spec);
  if (!match)
    throw new UsageError(
      `--dashboard-write: give "METHOD /path JSON", e.g. 'POST /posts {"body":"${MARKER}"}', got "${spec}"`,
    );
  const [, method, path, template] = match as unknown as [string, string, string, string];
  if (!template.includes(MARKER))
    throw new UsageError(`--dashboard-write: the JSON must hold "${MARKER}", to be found again`);
  const body = (marker: string) => JSON.parse(template.replaceAll(MARKER, marker)) as unknown;
  try {
    body('x');
  } catch (error) {
    throw new UsageError(`--dashboard-write: not JSON: ${(error as Error).message}`);
  }
  return { method, path, body };
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
  for (const [flag, value] of [
    ['--dashboard-read', options.dashboardRead],
    ['--dashboard-write', options.dashboardWrite],
  ] as const) {
    if (value !== undefined && options.app === undefined)
      throw new UsageError(`${flag}: only applies to app instances started with --app`);
  }
  if (options.dashboardRead !== undefined && !options.dashboardRead.startsWith('/'))
    throw new UsageError(
      `--dashboard-read: a path, starting with "/", got "${options.dashboardRead}"`,
    );
  const probe: DashboardProbe = {
    read: options.dashboardRead ?? '/',
    write:
      options.dashboardWrite === undefined
        ? undefined
        : parseDashboardWrite(options.dashboardWrite),
  };
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
  let running: { apps: LocalApps; edge: LocalEdge; dashboard: Dashboard } | null = null;
  if (options.app !== undefined) {
    let apps: { apps: LocalApps; edge: LocalEdge } | null = null;
    try {
      apps = await startApps(
        cluster,
        options.app,
        options.replay as ReplayMode | undefined,
        progress,
      );
      const dashboard = await Dashboard.start({
        regions: localRegions(apps.apps, apps.edge),
        primaryRegion: cluster.primaryRegion,
        probe,
        startedBy: 'regional dev --app',
      });
      running = { ...apps, dashboard };
    } catch (error) {
      await apps?.edge.close();
      await apps?.apps.stop();
      await cluster.stop();
      throw error;
    }
  }
  onShutdownSignal(async () => {
    progress('stopping');
    await running?.dashboard.close();
    await running?.edge.close();
    await running?.apps.stop();
    await cluster.stop();
    progress('stopped');
  });
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  if (options.json) {
    process.stdout.write(
      `${JSON.stringify({ ...cluster.toJSON(), ...(running ? { entries: running.edge.entries, dashboard: running.dashboard.url } : {}), dir: cluster.dir, readyMs: Math.round(performance.now() - started) })}\n`,
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
      ...(running
        ? ['', appTable(running), '', `Dashboard (local runs only): ${running.dashboard.url}`, '']
        : []),
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
