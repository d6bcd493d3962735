/**
 * Runs one scenario of the fault suite: the app in every region (LocalApps) behind the local
 * edge, the workload, the fault injected mid-run and healed, the final state read from the
 * primary, and the judgement. Everything it starts is stopped again, also when the runner is
 * interrupted (`cleanup`).
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { LocalApps } from '../../src/edge/apps.js';
import { LocalEdge } from '../../src/edge/edge.js';
import type { LocalCluster } from '../../src/testing/cluster.js';
import { check } from './checker.js';
import { clientAgent } from './client.js';
import type { FinalState } from './history.js';
import { type ScenarioResult, summarise } from './report.js';
import { type FaultContext, type Scenario, SUITE_ENV } from './scenarios.js';
import { Workload } from './workload.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const APP = `"${process.execPath}" --conditions=regional-source --import tsx test/faults/app.ts`;
/** Hard client-side time-out of every request: no answer by then is a hang. */
export const CLIENT_TIMEOUT_MS = 20_000;
const WARMUP_MS = 2_500;
const AFTER_HEAL_MS = 2_500;
const CLIENTS_PER_REGION = 2;
const THINK_MS = 20;
const MAX_OPS_PER_CLIENT = 5_000;
/** Load levels tried once (clients per region); the highest the machine sustains is used. */
const LOAD_LEVELS = [8, 16, 32, 64];
const LOAD_PROBE_MS = 2_500;

export const log = (message: string) => process.stderr.write(`faults: ${message}\n`);
export const closers = new Set<() => Promise<unknown>>();

/** Stops whatever runs now (interrupted runner). */
export async function cleanup(): Promise<void> {
  for (const close of [...closers].reverse()) await close().catch(() => {});
  closers.clear();
}

/** Runs `fn`, then `close` — also when the runner is interrupted meanwhile. */
async function closing<R>(close: () => Promise<unknown>, fn: () => Promise<R>): Promise<R> {
  closers.add(close);
  try {
    return await fn();
  } finally {
    closers.delete(close);
    await close();
  }
}

export interface Suite {
  cluster: LocalCluster;
  secret: string;
  secrets: string[];
  logDir: string;
}

async function startApps(suite: Suite, scenario: Scenario, logFile: string) {
  const lines: string[] = [];
  const apps = await LocalApps.start({
    command: APP,
    cwd: ROOT,
    cluster: suite.cluster,
    secret: suite.secret,
    mode: scenario.mode ?? 'proxy',
    env: {
      ...process.env,
      ...SUITE_ENV,
      ...scenario.env,
      ...(scenario.naive ? { FAULTS_NAIVE: '1' } : {}),
    },
    onOutput: (region, line) => lines.push(`[${region}] ${line}`),
  });
  const flush = () => writeFileSync(logFile, `${lines.join('\n')}\n`, { flag: 'a' });
  return { apps, flush };
}

/** Tries a few load levels once; the highest one whose latency stays in the bound and whose throughput does not fall. */
async function calibrate(
  suite: Suite,
  scenario: Scenario,
  edge: LocalEdge,
): Promise<[number, string]> {
  const probes: { level: number; opsPerSec: number; p99: number }[] = [];
  // Warm up first: the apps were just started, and the first probe would pay for it.
  const warm = newWorkload(edge, 'warmup', LOAD_LEVELS[0] as number, 0, performance.now());
  warm.start();
  await sleep(1_000);
  await warm.stop();
  for (const level of LOAD_LEVELS) {
    const workload = newWorkload(edge, `calibrate-${level}`, level, 0, performance.now());
    workload.start();
    await sleep(LOAD_PROBE_MS);
    await workload.stop();
    const took = workload.history.map((op) => op.complete - op.invoke).sort((a, b) => a - b);
    const p99 = took[Math.floor(took.length * 0.99)] ?? 0;
    probes.push({
      level,
      opsPerSec: Math.round(took.length / (LOAD_PROBE_MS / 1000)),
      p99: Math.round(p99),
    });
    log(
      `load probe: ${level} clients/region → ${probes.at(-1)?.opsPerSec} ops/s, p99 ${Math.round(p99)} ms`,
    );
  }
  await truncate(suite.cluster);
  const best = Math.max(...probes.map((p) => p.opsPerSec));
  const fit = probes.filter((p) => p.p99 <= scenario.boundMs && p.opsPerSec >= 0.9 * best);
  const level = (fit.at(-1) ?? probes[0])?.level ?? 2;
  const text = probes
    .map((p) => `${p.level}/region ${p.opsPerSec} ops/s p99 ${p.p99} ms`)
    .join('; ');
  return [level, `concurrency ${level} clients/region, sequential (probes: ${text})`];
}

function newWorkload(
  edge: LocalEdge,
  prefix: string,
  perRegion: number,
  thinkMs: number,
  t0: number,
) {
  return new Workload({
    entries: edge.entries,
    clientsPerRegion: perRegion,
    keyPrefix: prefix,
    agent,
    clock: () => performance.now() - t0,
    timeoutMs: CLIENT_TIMEOUT_MS,
    maxOps: MAX_OPS_PER_CLIENT,
    maxDurationMs: 60_000,
    thinkMs,
  });
}
export const agent = clientAgent();

/** Empties the tables, and waits until the replicas have too (or a next read would see old rows). */
async function truncate(cluster: LocalCluster): Promise<void> {
  await cluster.query('iad', 'TRUNCATE items, item_audit, filler RESTART IDENTITY');
  for (const r of cluster.topology.replicaRegions)
    await cluster.waitForReplay(r, undefined, 30_000);
}

async function finalState(cluster: LocalCluster, timeline: string[]): Promise<FinalState> {
  // Healed: every replica streams and catches up (else the run's end is suspect: say so).
  try {
    await cluster.waitForStreaming(30_000);
    for (const r of cluster.topology.replicaRegions)
      await cluster.waitForReplay(r, undefined, 30_000);
  } catch (error) {
    timeline.push(`replication did not catch up: ${(error as Error).message}`);
  }
  const items = await cluster.query<{ value: string; client: string }>(
    'iad',
    'SELECT value, client FROM items',
  );
  const audit = await cluster.query<{ value: string }>('iad', 'SELECT value FROM item_audit');
  return { items: items.rows, audit: audit.rows.map((r) => r.value) };
}

/** Clients per region of the `load` scenario and how it was chosen (calibrated once). */
let loadLevel: [number, string] | null = null;
export function setLoadLevel(clients: number, why: string): void {
  loadLevel = [clients, why];
}

export async function runScenario(
  suite: Suite,
  scenario: Scenario,
  run: number,
): Promise<ScenarioResult> {
  const started = performance.now();
  const logFile = path.join(suite.logDir, `${scenario.name}-${run}.log`);
  const { apps, flush } = await startApps(suite, scenario, logFile);
  const stopApps = () => apps.stop().finally(flush);
  return closing(stopApps, async () => {
    const edge = await LocalEdge.start({ apps: apps.edgeApps(), links: suite.cluster });
    return closing(
      () => edge.close(),
      async () => {
        const result = await drive(suite, scenario, run, apps, edge);
        result.durationMs = Math.round(performance.now() - started);
        return result;
      },
    );
  });
}

/** The workload, with the fault injected mid-run and healed; then the judgement. */
async function drive(
  suite: Suite,
  scenario: Scenario,
  run: number,
  apps: LocalApps,
  edge: LocalEdge,
): Promise<ScenarioResult> {
  let perRegion = scenario.clientsPerRegion ?? CLIENTS_PER_REGION;
  let concurrency: string | undefined;
  if (scenario.name === 'load') {
    loadLevel ??= await calibrate(suite, scenario, edge);
    [perRegion, concurrency] = loadLevel;
  }
  const t0 = performance.now();
  const clock = () => performance.now() - t0;
  const timeline: string[] = [];
  const note = (event: string) => timeline.push(`${(clock() / 1000).toFixed(2)}s ${event}`);
  const prefix = `${scenario.name}-${run}-${Date.now()}`;
  const workload = newWorkload(edge, prefix, perRegion, scenario.thinkMs ?? THINK_MS, t0);
  const ctx: FaultContext = { cluster: suite.cluster, apps, workload, note };
  await closing(
    () => workload.stop(),
    async () => {
      workload.start();
      await sleep(WARMUP_MS);
      if (scenario.inject) {
        note('inject');
        await scenario.inject(ctx);
        note('injected');
      }
      await sleep(scenario.holdMs);
      if (scenario.heal) {
        note('heal');
        await scenario.heal(ctx);
        note('healed');
      }
      // An instance that crashed is started again, so the rest of the run still has it.
      for (const region of new Set(apps.exits().map((exit) => exit.region))) {
        note(`restarting ${region} after its crash`);
        await apps.restart(region).catch((e) => note(`restart failed: ${(e as Error).message}`));
      }
      await sleep(AFTER_HEAL_MS);
      note('stopping clients');
    },
  );
  note('clients stopped');
  const final = await finalState(suite.cluster, timeline);
  const crashes = apps.exits().map((e) => ({ ...e, at: e.at - performance.timeOrigin - t0 }));
  const writeBoundMs = scenario.writeBoundMs ?? scenario.boundMs;
  const judgement = check(workload.history, final, {
    boundMs: scenario.boundMs,
    writeBoundMs,
    slackMs: scenario.slackMs,
    crashes,
    secrets: suite.secrets,
    expectAvailable: scenario.available === true,
  });
  await truncate(suite.cluster);
  // The whole history beside the app logs, to diagnose a failure beyond its examples.
  writeFileSync(
    path.join(suite.logDir, `${scenario.name}-${run}.history.json`),
    JSON.stringify({ timeline, final, crashes, history: workload.history }),
  );
  const result = summarise(workload.history, judgement, {
    boundMs: scenario.boundMs,
    writeBoundMs,
    slackMs: scenario.slackMs,
    clients: perRegion * 3,
    durationMs: 0,
    timeline,
  });
  if (concurrency) result.concurrency = concurrency;
  if (scenario.naive) result.naive = true;
  return result;
}
