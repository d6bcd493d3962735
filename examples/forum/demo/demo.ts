/**
 * `regional demo` (`npm start`): the forum in three regions, deployed four ways, under the same
 * workload, measured side by side. `--serve` runs just the Regional deployment for a person
 * to click through, with the local dashboard (src/dashboard) beside it.
 */
import { type ChildProcess, fork } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { onShutdownSignal } from '../../../src/cli/shared.js';
import { Dashboard, type DashboardProbe, localRegions } from '../../../src/dashboard/server.js';
import { LocalApps } from '../../../src/edge/apps.js';
import { LocalEdge } from '../../../src/edge/edge.js';
import { migrate } from '../../../src/migrate/index.js';
import { LocalCluster } from '../../../src/testing/cluster.js';
import { redisUnavailableReason } from '../../../src/testing/redis/binary.js';
import { DEPLOYMENTS, type Deployment } from './deployments.js';
import { LinkProbe } from './link-probe.js';
import {
  checkGoals,
  type DeploymentFigures,
  renderChart,
  renderReport,
  renderSummary,
  summarize,
  writeDemoResults,
} from './report.js';
import { seedForum } from './seed.js';
import type { RegionSample, WorkloadOptions } from './workload.js';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const MIGRATIONS = path.join(ROOT, 'examples/forum/migrations');
const SERVER_COMMAND = `"${process.execPath}" --conditions=regional-source --import tsx examples/forum/server.ts`;

/** What the dashboard asks the forum: the topic list, and a new topic read back by its id. */
export const FORUM_PROBE: DashboardProbe = {
  read: '/api/topics',
  write: { method: 'POST', path: '/api/topics', body: (marker) => ({ title: marker }) },
};

export interface DemoOptions {
  /** Run only the Regional deployment and keep it up, printing the entry URLs as JSON. */
  serve?: boolean;
  /** Measured seconds per deployment (default 20), after `warmup` seconds (default 3). */
  duration?: number;
  warmup?: number;
  /** Cluster data directory (default `.regional/demo`). */
  dir?: string;
  /** Deployments to run, by name (default: all four). */
  only?: string[];
  /** Where demo.json and demo.svg go (default `bench/results`). */
  results?: string;
  readers?: number;
  writers?: number;
}

/** What the demo is running right now, for Ctrl-C. */
interface Running {
  cluster: LocalCluster | null;
  apps: LocalApps | null;
  edge: LocalEdge | null;
  /** The dashboard, with `--serve`. */
  dashboard: Dashboard | null;
  /** The workload's process, while a deployment is measured. */
  workload: ChildProcess | null;
  /** Set once a signal asked the demo to stop: what fails from then on is the stopping. */
  stopping: boolean;
}

const status = (message: string) => process.stderr.write(`regional demo: ${message}\n`);

function progressBar(label: string): (fraction: number) => void {
  const tty = process.stderr.isTTY;
  let lastTenth = -1;
  return (fraction) => {
    const width = 30;
    const done = Math.round(fraction * width);
    const text = `[${'#'.repeat(done)}${'-'.repeat(width - done)}] ${Math.round(fraction * 100)}% ${label}`;
    if (tty) {
      process.stderr.write(`\r${text}${fraction >= 1 ? '\n' : ''}`);
    } else if (Math.floor(fraction * 10) !== lastTenth) {
      lastTenth = Math.floor(fraction * 10);
      process.stderr.write(`${text}\n`);
    }
  };
}

async function startDeployment(
  cluster: LocalCluster,
  deployment: Deployment,
  running: Running,
): Promise<LocalEdge> {
  running.apps = await LocalApps.start({
    command: SERVER_COMMAND,
    cwd: ROOT,
    cluster,
    regions: deployment.regions(cluster),
    regionEnv: (region) => deployment.env(cluster, region),
    onOutput: (region, line) => {
      if (!/^listening on /.test(line)) process.stderr.write(`[forum ${region}] ${line}\n`);
    },
  });
  running.edge = await LocalEdge.start({
    apps: running.apps.edgeApps(),
    entries: deployment.entries(cluster),
    links: cluster,
  });
  return running.edge;
}

async function stopDeployment(running: Running): Promise<void> {
  await running.edge?.close();
  await running.apps?.stop();
  running.edge = null;
  running.apps = null;
}

/** Runs the workload in a child process (see workload-process.ts) and returns its samples. */
function workloadInChild(
  options: WorkloadOptions,
  running: Running,
): Promise<Record<string, RegionSample>> {
  const { onProgress, ...rest } = options;
  const child = fork(path.join(import.meta.dirname, 'workload-process.ts'), {
    execArgv: ['--conditions=regional-source', '--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    // Its own process group, as the app instances: a terminal's Ctrl-C reaches only the demo,
    // which stops the workload first, then the servers it talks to.
    detached: true,
  });
  running.workload = child;
  child.once('exit', () => {
    if (running.workload === child) running.workload = null;
  });
  return new Promise((resolve, reject) => {
    child.on(
      'message',
      (message: { progress?: number; samples?: Record<string, RegionSample>; error?: string }) => {
        if (message.progress !== undefined) onProgress?.(message.progress);
        if (message.samples) resolve(message.samples);
        if (message.error) reject(new Error(`the workload failed: ${message.error}`));
      },
    );
    child.once('exit', (code) =>
      reject(new Error(`the workload process exited (${code}) without results`)),
    );
    child.send(rest);
  });
}

/** Stops the workload's process, if one runs, and resolves once it has exited. */
async function stopWorkload(running: Running): Promise<void> {
  const child = running.workload;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

export async function runDemo(options: DemoOptions = {}): Promise<void> {
  const running: Running = {
    cluster: null,
    apps: null,
    edge: null,
    dashboard: null,
    workload: null,
    stopping: false,
  };
  onShutdownSignal(async () => {
    running.stopping = true;
    status('stopping');
    await stopWorkload(running);
    await running.dashboard?.close();
    await stopDeployment(running);
    await running.cluster?.stop();
  });

  const redisMissing = redisUnavailableReason();
  if (redisMissing) {
    status(
      `without Regional Redis: ${redisMissing.replace(/\.+$/, '')}. The forum keeps sessions and counters in Postgres and caches nothing; the rest of the demo runs as usual.`,
    );
  }
  status(
    'starting a Postgres primary in iad and replicas in cdg and syd (the first start runs initdb)',
  );
  const cluster = await LocalCluster.start({
    dir: options.dir ?? path.join(ROOT, '.regional', 'demo'),
    redis: redisMissing === null,
    onProgress: (message) => status(message),
  });
  running.cluster = cluster;
  try {
    const primary = cluster.env(cluster.primaryRegion);
    await migrate({
      primaryRegion: cluster.primaryRegion,
      region: cluster.primaryRegion,
      databaseUrl: primary.DATABASE_URL,
      dir: MIGRATIONS,
    });
    const writers = options.writers ?? 2;
    const seeded = await seedForum(cluster, { reset: !options.serve, writersPerRegion: writers });

    if (options.serve) {
      const edge = await startDeployment(
        cluster,
        DEPLOYMENTS.find((d) => d.name === 'regional') as Deployment,
        running,
      );
      running.dashboard = await Dashboard.start({
        regions: localRegions(running.apps as LocalApps, edge),
        primaryRegion: cluster.primaryRegion,
        probe: FORUM_PROBE,
        startedBy: 'regional demo --serve',
      });
      const dashboard = running.dashboard.url;
      process.stdout.write(`${JSON.stringify({ regions: edge.entries, dashboard })}\n`);
      status(
        `the forum runs in ${cluster.topology.regions.join(', ')}; open an entry URL above, or the dashboard: ${dashboard}. Ctrl-C stops.`,
      );
      await new Promise(() => {}); // until a signal stops the process
      return;
    }

    const selected = DEPLOYMENTS.filter((d) => !options.only || options.only.includes(d.name));
    if (selected.length === 0) {
      throw new Error(
        `--only: none of ${options.only?.join(', ')} is a deployment (${DEPLOYMENTS.map((d) => d.name).join(', ')})`,
      );
    }
    const durationMs = (options.duration ?? 20) * 1000;
    const warmupMs = (options.warmup ?? 3) * 1000;
    const figures: DeploymentFigures[] = [];
    const runId = Date.now().toString(36);
    for (const [index, deployment] of selected.entries()) {
      const edge = await startDeployment(cluster, deployment, running);
      const probe = await LinkProbe.start(cluster, {
        to: cluster.primaryRegion,
        from: cluster.topology.replicaRegions,
      });
      probe.measureFrom(performance.now() + warmupMs);
      let samples: Record<string, RegionSample>;
      let linkRttP50Ms: Record<string, number>;
      try {
        samples = await workloadInChild(
          {
            entries: Object.fromEntries(
              cluster.topology.regions.map((region) => [region, edge.url(region)]),
            ),
            topicIds: seeded.topicIds,
            writerTopics: seeded.writerTopics,
            readersPerRegion: options.readers ?? 3,
            readerThinkMs: 250,
            writerThinkMs: 100,
            warmupMs,
            durationMs,
            runId: `${runId}d${index + 1}`,
            onProgress: progressBar(`${index + 1}/${selected.length} ${deployment.label}`),
          },
          running,
        );
      } finally {
        linkRttP50Ms = await probe.stop();
      }
      await stopDeployment(running);
      figures.push({
        name: deployment.name,
        label: deployment.label,
        linkRttP50Ms,
        regions: Object.fromEntries(
          Object.entries(samples).map(([region, sample]) => [region, summarize(sample)]),
        ),
      });
    }

    const rtt = (a: string, b: string) => cluster.topology.rttMs(a, b);
    // The project's own thresholds, kept in demo.json for the benchmarks; the printed report
    // says what the run showed instead.
    const goals = checkGoals(figures, cluster.primaryRegion, rtt);
    const { regions } = cluster.topology;
    const links = regions.flatMap((a, i) =>
      regions.slice(i + 1).map((b) => `${a}–${b} ${rtt(a, b)} ms`),
    );
    process.stdout.write(
      [
        '',
        `Regional demo: the forum in ${regions.join(', ')} (primary ${cluster.primaryRegion}); round trips ${links.join(', ')}.`,
        `Each deployment: ${options.readers ?? 3} readers and ${writers} writers per region, ${durationMs / 1000} s measured after ${warmupMs / 1000} s of warm-up.`,
        `Regional Redis: ${redisMissing ? 'not used (redis-server missing)' : 'sessions and counters in the shared store, topic list in the regional cache'}.`,
        '',
        renderReport(figures),
        '',
        renderSummary(figures, { primaryRegion: cluster.primaryRegion, rttMs: rtt }),
        '',
      ].join('\n'),
    );
    const data = {
      generatedAt: new Date().toISOString(),
      machine: {
        cpus: os.cpus().length,
        node: process.version,
        platform: `${process.platform}-${process.arch}`,
      },
      primaryRegion: cluster.primaryRegion,
      rttMs: Object.fromEntries(
        regions.flatMap((a, i) => regions.slice(i + 1).map((b) => [`${a}-${b}`, rtt(a, b)])),
      ),
      durationMs,
      warmupMs,
      readersPerRegion: options.readers ?? 3,
      writersPerRegion: writers,
      redis: redisMissing === null,
      deployments: Object.fromEntries(
        figures.map((f) => [
          f.name,
          { label: f.label, linkRttP50Ms: f.linkRttP50Ms, regions: f.regions },
        ]),
      ),
      goals,
    };
    const written = writeDemoResults(
      options.results ?? path.join(ROOT, 'bench', 'results'),
      data,
      renderChart(figures, {
        title: `Regional demo: the forum in ${regions.join(', ')}, ${figures.length === 1 ? 'one deployment' : `${figures.length} deployments side by side`}`,
        subtitle: `Database primary in ${cluster.primaryRegion}; round trips ${links.join(', ')}; ${options.readers ?? 3} readers and ${writers} writers per region, ${durationMs / 1000} s per deployment.`,
        primaryRegion: cluster.primaryRegion,
        roundTripMs: (figures.find((f) => f.name === 'regional') ?? figures[0])?.linkRttP50Ms,
      }),
    );
    status(
      `wrote ${path.relative(process.cwd(), written.json)} and ${path.relative(process.cwd(), written.svg)}`,
    );
  } catch (error) {
    // Stopping cuts the workload and the servers off mid-run: the signal's handler cleans up
    // and exits; what that made fail here is no failure of the demo.
    if (running.stopping) await new Promise<never>(() => {});
    throw error;
  } finally {
    await stopDeployment(running);
    await cluster.stop();
    running.cluster = null;
  }
}
