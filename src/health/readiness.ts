import pg from 'pg';
import { ReplicationTimeoutError } from '../core/errors.js';
import { formatLsn, type Lsn, parseLsn } from '../core/lsn.js';
import type { ReplayTracker } from '../core/tracker.js';
import { schemaLsn } from '../migrate/index.js';

/** One check's outcome. `skipped` checks could not be judged because another one failed. */
export interface CheckResult {
  status: 'ok' | 'failed' | 'skipped';
  detail: string;
  ms: number;
}

export interface ReadinessReport {
  ready: boolean;
  region: string | null;
  /** Names of the checks that failed. */
  failed: string[];
  checks: Record<string, CheckResult>;
}

/** What readiness checks: a `RegionalPool` is one. */
export interface ReadinessTarget {
  readonly config: {
    readonly region: string | null;
    readonly maxWaitMs: number;
    readonly isPrimaryRegion: boolean;
  };
  /** Writes travel through primary-region instances (`writes: 'forward'`): readiness pings them. */
  readonly forwardsWrites?: boolean;
  /** The primary, and this region's replica (`null` without one), as node-postgres pools. */
  readonly primaryPool: pg.Pool;
  readonly replicaPool: pg.Pool | null;
  /** The replica's replay tracker (the lag check waits on it). */
  readonly tracker: ReplayTracker | null;
}

/** True for an object readiness can check (a `RegionalPool`), told apart from other sources. */
export function isReadinessTarget(value: unknown): value is ReadinessTarget {
  const target = value as Partial<ReadinessTarget> | null;
  return (
    typeof target === 'object' &&
    target !== null &&
    typeof target.primaryPool?.query === 'function' &&
    typeof target.config === 'object'
  );
}

export interface ReadinessOptions {
  pool: ReadinessTarget;
  /**
   * Where the checks run their queries (default: the pool's own node-postgres pools). The
   * readiness endpoint gives them connections of their own (see {@link Readiness}), so neither
   * a flood of checks nor a busy app starves the other.
   */
  connections?: { primary: Queryable; replica: Queryable | null };
  /** The replica must replay the primary's current position within this (default: the pool's `maxWaitMs`). */
  maxLagMs?: number;
  /** Each check gives up after this long (default 2000 ms). */
  timeoutMs?: number;
  /**
   * Where writes go through primary-region instances (procedures, statement forwarding), a
   * check that they answer; it becomes the `primaryInstance` check.
   */
  pingPrimaryInstance?: () => Promise<void>;
}

const timed = async (
  timeoutMs: number,
  what: string,
  work: () => Promise<string>,
): Promise<CheckResult> => {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    const detail = await Promise.race([
      work(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${what} did not answer within ${timeoutMs} ms`)),
          timeoutMs,
        );
      }),
    ]);
    return { status: 'ok', detail, ms: Math.round(performance.now() - started) };
  } catch (error) {
    return {
      status: 'failed',
      detail: (error as Error).message,
      ms: Math.round(performance.now() - started),
    };
  } finally {
    clearTimeout(timer);
  }
};

const skipped = (detail: string): CheckResult => ({ status: 'skipped', detail, ms: 0 });

/** What the checks query: a node-postgres pool or client. */
export type Queryable = Pick<pg.Pool, 'query'>;

/**
 * Whether this instance should receive traffic: the primary answers (and is a primary), the
 * local replica answers, is a replica, keeps up within the lag bound, and has replayed the
 * schema `regional migrate` made current — so new code never meets the old schema on a
 * lagging replica. Every check runs at once and none waits longer than `timeoutMs`.
 *
 * @example
 * const report = await checkReadiness({ pool });
 * // { ready: false, failed: ['schema'], checks: { schema: { status: 'failed', detail: '…' }, … } }
 */
export async function checkReadiness(options: ReadinessOptions): Promise<ReadinessReport> {
  const { pool } = options;
  const timeoutMs = options.timeoutMs ?? 2000;
  const maxLagMs = options.maxLagMs ?? pool.config.maxWaitMs;
  const query = <R extends pg.QueryResultRow>(target: Queryable, text: string) =>
    target.query<R>({ text, query_timeout: timeoutMs } as pg.QueryConfig);
  const connections = options.connections ?? {
    primary: pool.primaryPool,
    replica: pool.replicaPool,
  };

  let primaryLsn: Lsn | null = null;
  let requiredSchema: Lsn | null = null;
  const primary = timed(timeoutMs, 'the primary', async () => {
    const { rows } = await query<{ standby: boolean; lsn: string }>(
      connections.primary,
      'SELECT pg_is_in_recovery() AS standby, pg_current_wal_flush_lsn()::text AS lsn',
    );
    const row = rows[0] as { standby: boolean; lsn: string | null };
    if (row.standby) {
      throw new Error(
        'DATABASE_URL points at a server in recovery (a replica), not at the primary',
      );
    }
    primaryLsn = parseLsn(row.lsn as string);
    requiredSchema = await schemaLsn((sql) => query(connections.primary, sql));
    return `reachable, at ${row.lsn}`;
  });

  let replayed: Lsn | null = null;
  const replicaPool = connections.replica;
  const replica = replicaPool
    ? timed(timeoutMs, 'the replica', async () => {
        const { rows } = await query<{ standby: boolean; lsn: string | null }>(
          replicaPool,
          'SELECT pg_is_in_recovery() AS standby, pg_last_wal_replay_lsn()::text AS lsn',
        );
        const row = rows[0] as { standby: boolean; lsn: string | null };
        if (!row.standby || !row.lsn) {
          throw new Error(
            'DATABASE_REPLICA_URL points at a primary (not in recovery), not at a replica',
          );
        }
        replayed = parseLsn(row.lsn);
        return `reachable, replayed ${row.lsn}`;
      })
    : Promise.resolve(skipped('no replica in this region: reads go to the primary'));

  const instance = options.pingPrimaryInstance
    ? timed(timeoutMs, 'the primary-region instance', async () => {
        await (options.pingPrimaryInstance as () => Promise<void>)();
        return 'answers';
      })
    : null;

  const [primaryResult, replicaResult, instanceResult] = await Promise.all([
    primary,
    replica,
    instance,
  ]);
  const checks: Record<string, CheckResult> = { primary: primaryResult, replica: replicaResult };
  if (instanceResult) checks.primaryInstance = instanceResult;

  if (!replicaPool) {
    checks.lag = skipped('no replica in this region');
    checks.schema = skipped('no replica in this region');
  } else if (primaryResult.status !== 'ok' || replicaResult.status !== 'ok') {
    const why = primaryResult.status !== 'ok' ? 'the primary' : 'the replica';
    checks.lag = skipped(`cannot be judged: ${why} failed`);
    checks.schema = skipped(`cannot be judged: ${why} failed`);
  } else {
    const primaryAt = primaryLsn as unknown as Lsn;
    const schemaAt = requiredSchema as Lsn | null;
    const replayedAt = replayed as unknown as Lsn;
    checks.schema =
      schemaAt === null
        ? { status: 'ok', detail: 'no migration recorded (regional migrate has not run)', ms: 0 }
        : replayedAt >= schemaAt
          ? { status: 'ok', detail: `replayed the schema of ${formatLsn(schemaAt)}`, ms: 0 }
          : {
              status: 'failed',
              detail: `the replica has replayed ${formatLsn(replayedAt)} but the current schema needs ${formatLsn(schemaAt)}`,
              ms: 0,
            };
    checks.lag = await timed(maxLagMs + timeoutMs, 'the replica', async () => {
      if (replayedAt >= primaryAt) return `caught up (${formatLsn(replayedAt)})`;
      try {
        const waited = await (pool.tracker as ReplayTracker).waitFor(primaryAt, maxLagMs);
        return `replayed the primary's position ${formatLsn(primaryAt)} in ${Math.round(waited)} ms`;
      } catch (error) {
        if (error instanceof ReplicationTimeoutError) {
          throw new Error(
            `the replica is more than ${maxLagMs} ms behind the primary (${error.message})`,
          );
        }
        throw error;
      }
    });
  }
  const failed = Object.entries(checks)
    .filter(([, check]) => check.status === 'failed')
    .map(([name]) => name);
  return { ready: failed.length === 0, region: pool.config.region, failed, checks };
}

export interface ReadinessCacheOptions extends Omit<ReadinessOptions, 'connections'> {
  /** A report is reused for this long (default 1000 ms): a flood of checks runs one. */
  cacheMs?: number;
}

/**
 * Readiness as an endpoint serves it: flood-proof. At most one check runs at a time (callers
 * meanwhile share it), its report is reused for `cacheMs`, and its queries run on connections
 * of its own — one to the primary, one to the replica — so a flood of health checks cannot
 * take the app's connections (nor make the app's load fail its checks), and the platform's own
 * check gets the same answer as everyone else.
 *
 * @example
 * const readiness = new Readiness({ pool });
 * const report = await readiness.check(); // cached for a second
 * await readiness.close();
 */
export class Readiness {
  private readonly options: ReadinessOptions;
  private readonly cacheMs: number;
  private readonly own: pg.Pool[] = [];
  private last: { report: ReadinessReport; at: number } | null = null;
  private running: Promise<ReadinessReport> | null = null;

  constructor(options: ReadinessCacheOptions) {
    const { cacheMs, ...rest } = options;
    this.cacheMs = cacheMs ?? 1000;
    const { pool } = options;
    const primary = this.connection(pool.primaryPool);
    const replica = pool.replicaPool ? this.connection(pool.replicaPool) : null;
    this.options = { ...rest, connections: { primary, replica } };
  }

  /** The latest report if it is fresh, else the one being made, else a new one. */
  check(): Promise<ReadinessReport> {
    const last = this.last;
    if (last && performance.now() - last.at < this.cacheMs) return Promise.resolve(last.report);
    this.running ??= checkReadiness(this.options)
      .then((report) => {
        this.last = { report, at: performance.now() };
        return report;
      })
      .finally(() => {
        this.running = null;
      });
    return this.running;
  }

  async close(): Promise<void> {
    await Promise.all(this.own.map((pool) => pool.end().catch(() => {})));
  }

  /** One connection of its own, made like `like`'s (URL, TLS, time-outs), kept open a while. */
  private connection(like: pg.Pool): pg.Pool {
    const options = (like as unknown as { options: pg.PoolConfig }).options;
    // Idle, it does not keep the process alive (a script that checks once can exit).
    const own = new pg.Pool({
      ...options,
      application_name: 'regional-readiness',
      max: 1,
      idleTimeoutMillis: 60_000,
      allowExitOnIdle: true,
    });
    // A server that dies under a check fails the check, never the process.
    own.on('error', () => {});
    own.on('connect', (client) => client.on('error', () => {}));
    this.own.push(own);
    return own;
  }
}

/** Liveness: the process answers. */
export function liveness(region: string | null): { alive: true; region: string | null } {
  return { alive: true, region };
}
