import { setTimeout as sleep } from 'node:timers/promises';
import type { LocalApps } from '../../src/edge/apps.js';
import type { ReplayMode } from '../../src/http/settings.js';
import type { LocalCluster } from '../../src/testing/cluster.js';
import type { Workload } from './workload.js';

/**
 * The configuration every instance runs with: the bounds below are derived from it. The
 * product's defaults are longer (a replayed write waits 30 s, a procedure 15 s × 3 attempts)
 * than a partition here lasts; these say what a user who wants tighter bounds sets.
 */
export const MAX_WAIT_MS = 1_000;
export const LAG_REPLAY_TIMEOUT_MS = 1_000;
export const REPLAY_TIMEOUT_MS = 3_000;
export const RPC_TIMEOUT_MS = 1_500;
export const RPC_ATTEMPTS = 2;
export const QUERY_TIMEOUT_MS = 3_000;
export const SUITE_ENV = {
  REGIONAL_MAX_WAIT_MS: String(MAX_WAIT_MS),
  REGIONAL_LAG_REPLAY_TIMEOUT_MS: String(LAG_REPLAY_TIMEOUT_MS),
  REGIONAL_REPLAY_TIMEOUT_MS: String(REPLAY_TIMEOUT_MS),
  REGIONAL_RPC_TIMEOUT_MS: String(RPC_TIMEOUT_MS),
  REGIONAL_RPC_ATTEMPTS: String(RPC_ATTEMPTS),
  REGIONAL_QUERY_TIMEOUT_MS: String(QUERY_TIMEOUT_MS),
};

/** A few round trips across the slowest link (syd, 100 ms), new connections, the edge. */
const PATH_MS = 1_000;
/**
 * A read waits for replication at most MAX_WAIT_MS, then the lag policy sends it elsewhere (a
 * replay that gives up after LAG_REPLAY_TIMEOUT_MS) or fails it: whatever is cut, nothing else
 * may hold it up.
 */
const READ_BOUND = MAX_WAIT_MS + LAG_REPLAY_TIMEOUT_MS + PATH_MS;
/**
 * The primary region (or the primary) is unreachable for a while: a write or call may wait for
 * its token, then for the replay or the procedure call to give up (their configured time-outs).
 */
const CUT_BOUND =
  MAX_WAIT_MS + Math.max(REPLAY_TIMEOUT_MS, RPC_TIMEOUT_MS * RPC_ATTEMPTS) + PATH_MS;

export interface FaultContext {
  cluster: LocalCluster;
  apps: LocalApps;
  workload: Workload;
  /** Records an event in the run's timeline. */
  note(event: string): void;
}

export interface Scenario {
  name: string;
  /** Extra environment of every instance. */
  env?: Record<string, string>;
  /** `REGIONAL_REPLAY_MODE` (default `proxy`). */
  mode?: ReplayMode;
  /** Plain replica routing (`FAULTS_NAIVE=1`): expected to break read-your-writes. */
  naive?: boolean;
  /** No fault: every request must succeed (the `unavailable` invariant). */
  available?: boolean;
  /**
   * The longest an answer may take, as the configuration promises it: a read's, a write's or
   * call's (default the same), and the machine's noise on top.
   */
  boundMs: number;
  writeBoundMs?: number;
  slackMs: number;
  clientsPerRegion?: number;
  thinkMs?: number;
  /** Makes the fault; then the run waits `holdMs` and calls `heal`. */
  inject?(ctx: FaultContext): Promise<void>;
  holdMs: number;
  heal?(ctx: FaultContext): Promise<void>;
}

const REPLICAS = ['cdg', 'syd'];
const pauseReplicas = async ({ cluster }: FaultContext) => {
  for (const r of REPLICAS) await cluster.pauseReplay(r);
};
const resumeReplicas = async ({ cluster }: FaultContext) => {
  for (const r of REPLICAS) await cluster.resumeReplay(r);
};

const lag = (policy: string): Scenario => ({
  name: `lag-${policy}`,
  env: { REGIONAL_LAG_POLICY: policy },
  boundMs: READ_BOUND,
  slackMs: 1_000,
  // Replay paused well past the bound, so that reads after writes hit the policy.
  inject: pauseReplicas,
  holdMs: 3 * MAX_WAIT_MS,
  heal: resumeReplicas,
});

const partition = (mode: 'refuse' | 'hang', replay: ReplayMode = 'proxy'): Scenario => ({
  name: `partition-${mode}${replay === 'proxy' ? '' : `-${replay}`}`,
  mode: replay,
  boundMs: READ_BOUND,
  writeBoundMs: CUT_BOUND,
  slackMs: 1_000,
  async inject({ cluster }) {
    // Replication goes first, as links rarely fail at one instant: writes acknowledged
    // meanwhile leave their clients' tokens ahead of syd's replica, so reads there must
    // go elsewhere (the lag policy) while the primary region cannot be reached.
    await cluster.link('syd', 'iad').cut(mode, 'replication');
    await sleep(1_000);
    await cluster.link('syd', 'iad').cut(mode);
  },
  // Longer than the bounds: a request that waits out the whole partition is a violation.
  holdMs: CUT_BOUND + 2_000,
  heal: ({ cluster }) => cluster.link('syd', 'iad').restore(),
});

/** Waits (a bounded time) until a procedure call is in flight, then SIGKILLs iad's instance. */
async function killWhileCalling(ctx: FaultContext): Promise<void> {
  for (let i = 0; i < 200 && ctx.workload.callsInFlight === 0; i++) await sleep(5);
  ctx.note(`iad app SIGKILL (${ctx.workload.callsInFlight} call(s) in flight)`);
  await ctx.apps.kill('iad');
  await sleep(300);
  await ctx.apps.restart('iad');
  ctx.note('iad app restarted');
}

export const SCENARIOS: Scenario[] = [
  { name: 'none', available: true, boundMs: READ_BOUND, slackMs: 1_000, holdMs: 3_000 },
  lag('replay'),
  lag('primary'),
  lag('error'),
  {
    name: 'replica-kill',
    boundMs: READ_BOUND,
    slackMs: 1_000,
    async inject({ cluster, note }) {
      // A burst of writes the replica replays into its buffers: warm, dirty, not yet at a
      // restartpoint, so crash recovery has WAL to redo after the kill.
      await cluster.query(
        'iad',
        "INSERT INTO filler (pad) SELECT repeat('x', 200) FROM generate_series(1, 200000)",
      );
      await cluster.waitForReplay('syd', undefined, 20_000);
      note('burst replayed in syd');
      await cluster.server('syd').kill();
    },
    holdMs: 2_000,
    heal: ({ cluster }) => cluster.server('syd').start(),
  },
  {
    name: 'replication-hang',
    boundMs: READ_BOUND,
    slackMs: 1_000,
    inject: ({ cluster }) => cluster.link('syd', 'iad').cut('hang', 'replication'),
    holdMs: 4_000,
    heal: ({ cluster }) => cluster.link('syd', 'iad').restore('replication'),
  },
  partition('refuse'),
  partition('hang'),
  {
    name: 'primary-app-kill',
    boundMs: READ_BOUND,
    writeBoundMs: CUT_BOUND,
    slackMs: 1_000,
    async inject(ctx) {
      await killWhileCalling(ctx);
      await sleep(1_500);
      await killWhileCalling(ctx);
    },
    holdMs: 0,
  },
  {
    name: 'lag-spike',
    boundMs: READ_BOUND,
    slackMs: 1_000,
    inject: async ({ cluster }) => cluster.link('syd', 'iad').setRtt(2_000, 'replication'),
    holdMs: 4_000,
    heal: async ({ cluster }) => {
      const link = cluster.link('syd', 'iad');
      link.setRtt(link.rttMs);
    },
  },
  {
    name: 'primary-kill',
    boundMs: READ_BOUND,
    writeBoundMs: CUT_BOUND,
    slackMs: 1_000,
    inject: ({ cluster }) => cluster.server('iad').kill(),
    holdMs: 1_500,
    heal: ({ cluster }) => cluster.server('iad').start(),
  },
  // The same partition where the platform's proxy (the local edge) replays writes.
  partition('hang', 'fly-replay'),
  // Concurrency chosen by the runner (calibrated once), no think time, no fault.
  {
    name: 'load',
    available: true,
    boundMs: READ_BOUND,
    slackMs: 2_000,
    thinkMs: 0,
    holdMs: 4_000,
  },
  {
    name: 'naive',
    naive: true,
    boundMs: READ_BOUND,
    slackMs: 1_000,
    inject: pauseReplicas,
    holdMs: 1_500,
    heal: resumeReplicas,
  },
];
