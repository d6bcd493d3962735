import { EventEmitter } from 'node:events';
import type pg from 'pg';
import {
  loadConfig,
  type RegionalConfig,
  type RegionalOptions,
  redactUrl,
} from '../core/config.js';
import { ConfigError, RegionalError } from '../core/errors.js';
import { formatLsn, type Lsn, parseLsn } from '../core/lsn.js';
import { ReplicaRoute, SourceKey, sourceStats } from '../core/route.js';
import type { ReplicatedSource } from '../core/source.js';
import { type LagSample, SourceTelemetry } from '../core/telemetry.js';
import type { ReplayTracker, ReplayTrackerStats } from '../core/tracker.js';
import { openClient, type RegionalClient } from './client.js';
import { guardedPool, systemIdentifier } from './connections.js';
import { readWriteMode, type WriteMode } from './forwarding.js';
import { registerParts } from './parts.js';
import { Reader } from './reader.js';
import { type LagRow, lagSample, REPLICA_LAG_SQL, replayLsnPoller } from './replay-poller.js';
import {
  normalize,
  type QueryConfig,
  type QueryInput,
  type QueryOptions,
  send,
  statementInfo,
  type Target,
} from './statement.js';
import {
  runTransaction,
  type TransactionClient,
  type TransactionDeps,
  type TransactionOptions,
} from './transaction.js';
import { Writer } from './writer.js';

export interface RegionalPoolOptions extends RegionalOptions {
  /** Settings for both node-postgres pools (`max`, `idleTimeoutMillis`, `ssl`, …), not the URL. */
  pool?: Omit<pg.PoolConfig, 'connectionString'>;
  /** Settings for the primary's pool only. */
  primaryPool?: Omit<pg.PoolConfig, 'connectionString'>;
  /** Settings for the replica's pool only. */
  replicaPool?: Omit<pg.PoolConfig, 'connectionString'>;
  /** An already resolved configuration (otherwise read from options and the environment). */
  config?: RegionalConfig;
  /** Receives warnings (a region without a replica, a replica going away). Default: `console.warn`. */
  onWarning?: (message: string, error?: unknown) => void;
  /**
   * `REGIONAL_WRITES`: how writes reach the primary from a replica region: `direct` (default)
   * or `forward` (over the signed channel of `regional/rpc`). See {@link WriteMode}.
   */
  writes?: WriteMode;
  /**
   * `REGIONAL_QUERY_TIMEOUT_MS`: a query with no answer after this long fails with
   * `REGIONAL_QUERY_TIMEOUT` and its connection is closed, so a server that hangs or a network
   * cut that drops packets cannot hold a request forever. Default 30 000; `0` waits forever.
   * (node-postgres's `query_timeout`, which it sets on both pools unless `pool` sets its own.)
   */
  queryTimeoutMs?: number;
}

/** Counters since the pool was made. */
export interface RegionalPoolStats {
  /** Reads answered by the local replica / by the primary. */
  replicaReads: number;
  primaryReads: number;
  /** Writes sent to the primary (statements and committed transactions). */
  writes: number;
  /** Reads the replica refused as writes (SQLSTATE 25006), retried on the primary. */
  readOnlyRetries: number;
  /** Reads sent to the primary because the replica had not caught up within the bound. */
  waitTimeouts: number;
  /** Times the replica failed and reads moved to the primary for a while. */
  replicaFailures: number;
  /**
   * Times the replica was seen to have restarted (another process start time) and was kept
   * out of use until it had replayed what the primary had then.
   */
  replicaRestarts: number;
  /**
   * Reads (and read-only transactions) that needed a position the replica was not known to
   * have, and asked for its replay position in their own round trip instead of polling first:
   * answered at once (the replica had it) / found it behind, then waited.
   */
  checkedReads: number;
  checkedReadsBehind: number;
  /** The replay tracker's counters (`null` without a replica). */
  tracker: ReplayTrackerStats | null;
}

/**
 * A drop-in for `pg.Pool` that routes each query: reads to this region's replica, writes and
 * read-write transactions to the primary. After a write it records the commit LSN (read in
 * the same round trip as the COMMIT) in the current context, and the context's next read
 * waits until the local replica has replayed it, up to `maxWaitMs`; past that the read goes
 * to the primary (or fails, with `waitPolicy: 'error'`). A replica that is down or refuses a
 * statement as a write sends the query to the primary instead.
 *
 * Without `PRIMARY_REGION` (local development, tests) it is a plain pool on `DATABASE_URL`.
 * Like `pg.Pool` it emits `'error'` when an idle connection breaks (and never throws it).
 *
 * @example
 * import { RegionalPool } from 'regional/pg';
 *
 * const pool = new RegionalPool(); // PRIMARY_REGION, REGION, DATABASE_URL, DATABASE_REPLICA_URL
 * await pool.query('INSERT INTO posts (body) VALUES ($1)', ['hello']); // primary
 * const { rows } = await pool.query('SELECT * FROM posts'); // local replica, sees the insert
 * await pool.query('UPDATE stats SET views = views + 1', [], { await: false });
 * await pool.transaction(async (tx) => {
 *   await tx.query('INSERT INTO topics (title) VALUES ($1)', ['hi']);
 *   await tx.query('UPDATE counters SET topics = topics + 1');
 * });
 */
export class RegionalPool extends EventEmitter implements ReplicatedSource {
  readonly config: RegionalConfig;
  /** The node-postgres pool on the primary, for what Regional does not cover. */
  readonly primaryPool: pg.Pool;
  /** The node-postgres pool on this region's replica (`null` where reads go to the primary). */
  readonly replicaPool: pg.Pool | null;
  /** `REGIONAL_QUERY_TIMEOUT_MS` (0: none). */
  readonly queryTimeoutMs: number;
  readonly #key: SourceKey;
  readonly #route: ReplicaRoute | null;
  readonly #reader: Reader;
  readonly #writer: Writer;
  readonly #deps: TransactionDeps;
  readonly #poller: ReturnType<typeof replayLsnPoller> | null;
  readonly #warn: (message: string, error?: unknown) => void;
  readonly #telemetry: SourceTelemetry;
  #ended = false;

  constructor(options: RegionalPoolOptions = {}) {
    super();
    const config = options.config ?? loadConfig(options);
    this.config = config;
    const warn =
      options.onWarning ?? ((message, error) => console.warn(`[regional] ${message}`, error ?? ''));
    this.#warn = warn;
    for (const warning of config.warnings) warn(warning);
    this.queryTimeoutMs = readQueryTimeout(options.queryTimeoutMs);
    const timeout = this.queryTimeoutMs > 0 ? { query_timeout: this.queryTimeoutMs } : {};

    this.primaryPool = guardedPool(
      config.databaseUrl,
      10_000,
      { ...timeout, ...options.pool, ...options.primaryPool },
      () => {},
    );
    this.primaryPool.on('error', (error) => this.#idleError('primary', error));
    this.#key = new SourceKey(() => this.#nameSource());
    this.#telemetry = new SourceTelemetry({
      system: 'postgresql',
      region: config.region ?? 'local',
      lag: () => this.#lag(),
      urls: { primary: config.databaseUrl, replica: config.replicaUrl },
      replicaUsable: config.replicaUrl ? () => this.#route?.usable() ?? false : undefined,
    });
    this.#writer = new Writer({
      telemetry: this.#telemetry,
      config,
      primaryPool: this.primaryPool,
      key: this.#key,
      writeMode: readWriteMode(options.writes),
      queryTimeoutMs: this.queryTimeoutMs,
    });

    const replicaUrl = config.replicaUrl;
    let route: ReplicaRoute | null = null;
    if (replicaUrl) {
      // A replica that hangs must not hang reads: give up connecting and use the primary.
      this.replicaPool = guardedPool(
        replicaUrl,
        5_000,
        { ...timeout, ...options.pool, ...options.replicaPool },
        (error) => this.#replicaFailed(error),
      );
      this.replicaPool.on('error', (error) => this.#idleError('replica', error));
      const poller = replayLsnPoller(
        {
          ...options.pool,
          ...options.replicaPool,
          connectionString: replicaUrl,
          connectionTimeoutMillis: 2_000,
        },
        {
          onConnect: (epoch) => route?.health.connected(epoch),
          onLost: (error) => route?.health.lost(error),
        },
      );
      this.#poller = poller;
      route = new ReplicaRoute({
        settings: config,
        poll: poller,
        key: this.#key,
        primaryPosition: () => this.#primaryFlushLsn(),
        name: `the replica in ${config.region}`,
        where: redactUrl(replicaUrl),
        fallback: 'reads go to the primary',
        format: formatLsn,
        warn,
        telemetry: this.#telemetry,
      });
      // The sentinel: connected now, and kept connected, so a restart of the replica is seen
      // (and the first wait doesn't pay for connecting).
      poller.warm();
    } else {
      this.replicaPool = null;
      this.#poller = null;
    }
    this.#route = route;
    this.#reader = new Reader({
      config,
      primaryPool: this.primaryPool,
      replicaPool: this.replicaPool,
      route,
      writer: this.#writer,
      telemetry: this.#telemetry,
    });
    this.#deps = { config, reader: this.#reader, writer: this.#writer };
    registerParts(this, { config, key: this.#key, reader: this.#reader, writer: this.#writer });
  }

  /**
   * Runs one query, routed: reads to the local replica (after waiting for this context's
   * writes), writes to the primary (recording their commit LSN).
   *
   * @example
   * const { rows } = await pool.query('SELECT * FROM posts WHERE id = $1', [id]);
   */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    input: QueryInput,
    values?: unknown[],
    options?: QueryOptions,
  ): Promise<pg.QueryResult<R>> {
    // Not async: the common read takes no extra promise on its way to the replica.
    let config: QueryConfig;
    try {
      config = normalize(input, values);
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.config.mode === 'single') return send<R>(this.primaryPool, config);
    return this.#telemetry.traced(config.text, () => this.#routed(config, options));
  }

  /** `query` once its text is normalized: where it goes, and going there. */
  #routed<R extends pg.QueryResultRow>(
    config: QueryConfig,
    options: QueryOptions | undefined,
  ): Promise<pg.QueryResult<R>> {
    const info = statementInfo(config.text, options?.kind);
    if (info.control) {
      return Promise.reject(
        new RegionalError(
          'REGIONAL_TRANSACTION_ON_POOL',
          `"${config.text.slice(0, 40)}" controls a transaction, but pool.query runs each statement on any connection. ` +
            'Use pool.transaction(fn) or a client from pool.connect().',
        ),
      );
    }
    const on = options?.on ?? (info.kind === 'read' ? 'replica' : 'primary');
    if (on === 'primary' && info.kind === 'write')
      return this.#writer.write(config, info, options) as Promise<pg.QueryResult<R>>;
    if (on === 'primary') return this.#reader.onPrimary<R>(config, info, 'forced');
    return this.#reader.read<R>(config, info, options);
  }

  /**
   * Checks out a client; see {@link RegionalClient} for how it chooses its server.
   *
   * @example
   * const client = await pool.connect({ on: 'primary' }); // pinned: SET and temp tables stay
   * try { await client.query('SET LOCAL …'); } finally { client.release(); }
   */
  async connect(options: { on?: Target } = {}): Promise<RegionalClient> {
    return openClient(this.#deps, options.on);
  }

  /**
   * Runs `fn` in a transaction on one connection and commits, or rolls back if it throws.
   * Read-write transactions run on the primary and record their commit LSN; read-only ones
   * run on the local replica.
   *
   * @example
   * const id = await pool.transaction(async (tx) => {
   *   const { rows } = await tx.query('INSERT INTO topics (title) VALUES ($1) RETURNING id', [title]);
   *   await tx.query('INSERT INTO posts (topic_id, body) VALUES ($1, $2)', [rows[0].id, body]);
   *   return rows[0].id;
   * });
   */
  transaction<T>(
    fn: (tx: TransactionClient) => Promise<T>,
    options: TransactionOptions = {},
  ): Promise<T> {
    if (this.config.mode === 'single') return runTransaction(this.#deps, fn, options);
    return this.#telemetry.traced('BEGIN', () => runTransaction(this.#deps, fn, options));
  }

  /**
   * Closes every connection.
   *
   * @example
   * process.on('SIGTERM', () => void pool.end());
   */
  async end(): Promise<void> {
    this.#ended = true;
    this.#route?.close();
    this.#telemetry.close();
    await Promise.all([this.primaryPool.end(), this.replicaPool?.end(), this.#poller?.close()]);
  }

  /**
   * Counters since the pool was made.
   *
   * @example
   * const { replicaReads, primaryReads, waitTimeouts } = pool.stats();
   */
  stats(): RegionalPoolStats {
    return sourceStats(this.#route, {
      primaryReadsWithoutRoute: this.#reader.primaryReadsWithoutRoute,
      writes: this.#writer.writes,
      readOnlyRetries: this.#reader.readOnlyRetries,
    });
  }

  /** The replay tracker of this region's replica (`null` without one): its known position and counters. */
  get tracker(): ReplayTracker | null {
    return this.#route?.tracker ?? null;
  }

  /** How writes reach the primary from a replica region (see {@link WriteMode}). */
  get writeMode(): WriteMode {
    return this.#writer.writeMode;
  }

  /** True where writes travel to primary-region instances (`writes: 'forward'` in a replica region). */
  get forwardsWrites(): boolean {
    return this.#writer.forwardsWrites;
  }

  /**
   * The name of this database in consistency contexts and tokens: `pg:` and the cluster's
   * system identifier, shared by the primary and its replicas. Asked once, on a connection of
   * its own.
   *
   * @example
   * await pool.sourceKey(); // 'pg:7412345678901234567'
   */
  sourceKey(): Promise<string> {
    return this.#key.get();
  }

  /**
   * Resolves once this region's replica has replayed `lsn` (at once where reads go to the
   * primary): what the HTTP layer uses to honour a client's token before the handler runs.
   *
   * @example
   * await pool.waitFor(lsn, 1000); // milliseconds waited
   */
  waitFor(lsn: Lsn, timeoutMs: number): Promise<number> {
    return this.#route ? this.#route.waitFor(lsn, timeoutMs) : Promise.resolve(0);
  }

  /**
   * True where reads go to a replica: a read that needs a position the replica is not known to
   * have asks for its replay position in the same round trip (see {@link ReplicatedSource}).
   */
  get checksOnRead(): boolean {
    return this.#route !== null;
  }

  /** True if this region's replica is known to have replayed `lsn` (always, without a replica). */
  hasReplayed(lsn: Lsn): boolean {
    return !this.#route || this.#route.hasReplayed(lsn);
  }

  /** `pg:` and the system identifier: from the replica where usable, else the primary. */
  async #nameSource(): Promise<string> {
    const replica = this.replicaPool && this.#route?.usable() ? this.replicaPool : null;
    try {
      return `pg:${await systemIdentifier(replica ?? this.primaryPool)}`;
    } catch (error) {
      // The primary has the same identifier; a failed primary leaves nothing to ask.
      if (!replica) throw error;
      this.#warn(
        `Could not read the cluster's system identifier from the replica in ${this.config.region} (${(error as Error)?.message ?? error}); asking the primary.`,
        error,
      );
      return `pg:${await systemIdentifier(this.primaryPool)}`;
    }
  }

  /** The replica's lag now, for the metrics: `null` without a usable replica. */
  async #lag(): Promise<LagSample | null> {
    if (!this.replicaPool || !this.#route?.usable()) return null;
    const [replica, primary] = await Promise.all([
      this.replicaPool.query<LagRow>(REPLICA_LAG_SQL),
      this.#primaryFlushLsn(),
    ]);
    return lagSample(replica.rows[0], primary);
  }

  /** The primary's WAL flush position now: what a restarted replica must replay first. */
  async #primaryFlushLsn(): Promise<Lsn> {
    const { rows } = await this.primaryPool.query<{ lsn: string }>(
      'SELECT pg_current_wal_flush_lsn()::text AS lsn',
    );
    return parseLsn((rows[0] as { lsn: string }).lsn);
  }

  #replicaFailed(error: unknown): void {
    if (!this.#ended) this.#route?.failed(error);
  }

  #idleError(which: Target, error: Error): void {
    // Connections still closing after end() may see their server go away: nothing to report.
    if (this.#ended) return;
    // An idle connection died (server restarted, network cut). node-postgres drops it from the
    // pool; let listeners see it, but don't take the process down. (A replica's connections
    // report to the route through their own listener, which warns.)
    if (this.listenerCount('error') > 0) this.emit('error', error);
    else if (which === 'primary')
      this.#warn(`An idle connection to the primary failed: ${error.message}`);
  }
}

/** `queryTimeoutMs`, else `REGIONAL_QUERY_TIMEOUT_MS`, else 30 s; 0 turns it off. */
function readQueryTimeout(given: number | undefined, env = process.env): number {
  const variable = given !== undefined ? 'queryTimeoutMs' : 'REGIONAL_QUERY_TIMEOUT_MS';
  const raw = given ?? env.REGIONAL_QUERY_TIMEOUT_MS;
  if (raw === undefined || raw === '') return 30_000;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0) {
    throw new ConfigError(
      variable,
      `must be a whole number of milliseconds >= 0 (0 waits forever), got ${JSON.stringify(raw)}`,
    );
  }
  return value;
}
