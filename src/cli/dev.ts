import path from 'node:path';
import { LocalCluster } from '../testing/cluster.js';
import { parseRttList } from '../testing/topology.js';
import { onShutdownSignal, progressReporter, table } from './shared.js';

export interface DevOptions {
  regions?: string;
  primary?: string;
  rtt?: string;
  dir?: string;
  json?: boolean;
  fresh?: boolean;
  redis?: boolean;
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
  onShutdownSignal(async () => {
    progress('stopping');
    await cluster.stop();
    progress('stopped');
  });
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  if (options.json) {
    process.stdout.write(
      `${JSON.stringify({ ...cluster.toJSON(), dir: cluster.dir, readyMs: Math.round(performance.now() - started) })}\n`,
    );
    progress(`ready in ${seconds}s; Ctrl-C stops`);
    return;
  }
  const lag = await cluster.measureLag();
  const rows = [['region', 'role', 'primary URL (from this region)', 'replica URL', 'replica lag']];
  for (const r of cluster.regions) {
    const regionLag = lag[r.region];
    rows.push([
      r.region,
      r.role,
      r.databaseUrl,
      r.replicaUrl ?? '-',
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
      r.redis.redisUrl,
      r.redis.redisReplicaUrl ?? '-',
      r.redis.redisCacheUrl,
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
      'Press Ctrl-C to stop.',
      '',
    ].join('\n'),
  );
}
