import { EventEmitter } from 'node:events';
import pg from 'pg';
import { BoundedWait } from '../core/bounded-wait.js';
import {
  loadConfig,
  type RegionalConfig,
  type RegionalOptions,
  redactUrl,
} from '../core/config.js';
import { type ConsistencyContext, currentContext } from '../core/context.js';
import { ConfigError, RegionalError } from '../core/errors.js';
import { formatLsn, type Lsn, parseLsn } from '../core/lsn.js';
import { ReplicaRoute } from '../core/route.js';
import type { ReplicatedSource } from '../core/source.js';
import { ReplayTracker, type ReplayTrackerStats } from '../core/tracker.js';
import { beginWithReplayLsn, readWithReplayLsn } from './checked-read.js';
import { inspectSql, type StatementInfo } from './classify.js';
import { RegionalClient } from './client.js';
import {
  type CommittedWrite,
  commitWithLsn,
  isConnectionFailure,
  writeWithCommitLsn,
} from './commit-lsn.js';
import { guardConnections, primaryError, unsent } from './connections.js';
import {
  forwardedTransactionError,
  missingForwarderError,
  readWriteMode,
  type WriteForwarder,
  type WriteMode,
} from './forwarding.js';
import { replayLsnPoller } from './replay-poller.js';

/** Where a statement runs. */
export type Target = 'primary' | 'replica';

/** A query as node-postgres takes it: text, or a config object (`text`, `values`, `rowMode`, `types`, `name`). */
export type QueryInput = string | (pg.QueryConfig & { rowMode?: 'array' });

export interface QueryOptions {
  /**
   * For writes: record the commit position so this context's later reads wait until the
   * local replica has it. Default `true`; `false` for writes nobody reads back right away
   * (counters, logs).
   */
  await?: boolean;
  /** Run on this server regardless of what the statement looks like. */
  on?: Target;
  /**
   * What the statement is, when the caller knows from its own query object (ORM
   * integrations): `write` goes to the primary without looking at the text; `read` goes to
   * the replica unless the text locks rows or holds a writing CTE.
   */
  kind?: 'read' | 'write';
}

export interface TransactionOptions {
  /**
   * A read-only transaction runs on the local replica (after this context's writes, like any
   * read: under read committed its `BEGIN` asks for the replica's position in the same round
   * trip; otherwise it waits first); a read-write one (the default) runs on the primary.
   */
  readOnly?: boolean;
  isolationLevel?: 'read committed' | 'repeatable read' | 'serializable';
  /** As for {@link QueryOptions.await}: record the commit position (default `true`). */
  await?: boolean;
}

/** What a transaction callback gets: queries on the transaction's one connection. */
export interface TransactionClient {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    input: QueryInput,
    values?: unknown[],
  ): Promise<pg.QueryResult<R>>;
  /** Which server the transaction runs on. */
  readonly on: Target;
  /** The underlying node-postgres client, for what `query` does not cover (cursors, COPY). */
  readonly client: pg.PoolClient;
}

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

const READ_ONLY_SQL_TRANSACTION = '25006';
const ISOLATION_LEVELS = new Set(['read committed', 'repeatable read', 'serializable']);

/**
 * A pg.Client that gives up connecting after `ms` unless told otherwise. Set on the pool's
 * `connectionTimeoutMillis` instead, pg-pool would also arm a timer on every checkout of an
 * idle connection, which costs more than Regional's routing on the read path.
 */
function clientWithConnectTimeout(ms: number): typeof pg.Client {
  return class extends pg.Client {
    constructor(config?: string | pg.ClientConfig) {
      const options = typeof config === 'string' ? { connectionString: config } : (config ?? {});
      super({ connectionTimeoutMillis: ms, ...options });
    }
  };
}

/**
 * Asks for the cluster's system identifier on a connection of its own, made as `pool` makes
 * its connections. Not on one of the pool's: the caller may be a transaction recording its
 * commit, and every connection of the pool may be held by such callers, all waiting for this.
 */
async function systemIdentifier(pool: pg.Pool): Promise<pg.QueryResult<{ id: string }>> {
  const Client = (pool.options.Client ?? pg.Client) as typeof pg.Client;
  const client = new Client(pool.options);
  // A connection that fails mid-query rejects the query; the event would only crash the process.
  client.on('error', () => {});
  await client.connect();
  try {
    return await client.query<{ id: string }>(
      'SELECT system_identifier::text AS id FROM pg_control_system()',
    );
  } finally {
    // The answer (or the query's error) is in hand; failing to close a one-off connection
    // changes neither, and the server drops it when the socket goes.
    await client.end().catch(() => {});
  }
}

/**
 * A query given as text and values. node-postgres copies config objects property by property
 * on every query (pg 8.23), which costs more than all of Regional's routing: text queries are
 * handed on as text, through {@link send}.
 */
class TextQuery {
  constructor(
    readonly text: string,
    readonly values?: unknown[],
  ) {}
}

/** Runs `config` on a node-postgres pool or client, as text when it came as text. */
export function send<R extends pg.QueryResultRow>(
  target: { query: pg.Pool['query'] },
  config: pg.QueryConfig,
): Promise<pg.QueryResult<R>> {
  if (config instanceof TextQuery) return target.query<R>(config.text, config.values);
  return target.query<R>(config);
}

export function normalize(
  input: QueryInput,
  values?: unknown[],
): pg.QueryConfig & { rowMode?: 'array' } {
  if (typeof input === 'string') return new TextQuery(input, values);
  if (input === null || typeof input !== 'object' || typeof input.text !== 'string') {
    throw new TypeError(
      'RegionalPool.query takes SQL text or a config object with `text`; for cursors and streams use a client from pool.connect({ on })',
    );
  }
  return values === undefined ? input : { ...input, values };
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
  /** The node-postgres pool on the primary. */
  readonly primaryPool: pg.Pool;
  /** The node-postgres pool on this region's replica (`null` where reads go to the primary). */
  readonly replicaPool: pg.Pool | null;
  /** The replay tracker of this region's replica (`null` without one). */
  readonly tracker: ReplayTracker | null;
  /** How writes reach the primary from a replica region (see {@link WriteMode}). */
  readonly writeMode: WriteMode;
  /** `REGIONAL_QUERY_TIMEOUT_MS` (0: none). */
  readonly queryTimeoutMs: number;
  private forwarder: WriteForwarder | null = null;
  private readonly poller: ReturnType<typeof replayLsnPoller> | null;
  private readonly route: ReplicaRoute | null;
  private readonly warn: (message: string, error?: unknown) => void;
  private readonly bounded: BoundedWait;
  private source: string | null = null;
  private sourcePromise: Promise<string> | null = null;
  private ended = false;
  private readonly counters = {
    replicaReads: 0,
    primaryReads: 0,
    writes: 0,
    readOnlyRetries: 0,
    waitTimeouts: 0,
    checkedReads: 0,
    checkedReadsBehind: 0,
  };

  constructor(options: RegionalPoolOptions = {}) {
    super();
    this.config = options.config ?? loadConfig(options);
    this.writeMode = readWriteMode(options.writes);
    this.warn =
      options.onWarning ?? ((message, error) => console.warn(`[regional] ${message}`, error ?? ''));
    for (const warning of this.config.warnings) this.warn(warning);
    this.bounded = new BoundedWait(
      this.config,
      {
        onTimeout: () => this.counters.waitTimeouts++,
        onUnavailable: (error) => this.replicaFailed(error),
      },
      formatLsn,
    );

    this.queryTimeoutMs = readQueryTimeout(options.queryTimeoutMs);
    const timeout = this.queryTimeoutMs > 0 ? { query_timeout: this.queryTimeoutMs } : {};

    this.primaryPool = new pg.Pool({
      Client: clientWithConnectTimeout(10_000),
      ...timeout,
      ...options.pool,
      ...options.primaryPool,
      connectionString: this.config.databaseUrl,
    });
    this.primaryPool.on('error', (error) => this.idleError('primary', error));
    guardConnections(this.primaryPool, () => {});

    const replicaUrl = this.config.replicaUrl;
    if (replicaUrl) {
      this.replicaPool = new pg.Pool({
        // A replica that hangs must not hang reads: give up connecting and use the primary.
        Client: clientWithConnectTimeout(5_000),
        ...timeout,
        ...options.pool,
        ...options.replicaPool,
        connectionString: replicaUrl,
      });
      this.replicaPool.on('error', (error) => this.idleError('replica', error));
      guardConnections(this.replicaPool, (error) => this.replicaFailed(error));
      let route: ReplicaRoute | null = null;
      this.poller = replayLsnPoller(
        {
          ...options.pool,
          ...options.replicaPool,
          connectionString: replicaUrl,
          connectionTimeoutMillis: 2_000,
        },
        {
          onConnect: (epoch) => route?.connected(epoch),
          onLost: (error) => route?.lost(error),
        },
      );
      this.tracker = new ReplayTracker({
        name: `the replica in ${this.config.region} (${redactUrl(replicaUrl)})`,
        poll: this.poller,
        format: formatLsn,
      });
      const tracker = this.tracker;
      route = new ReplicaRoute({
        forget: () => tracker.forget(),
        catchUp: async () => void (await tracker.waitFor(await this.primaryFlushLsn(), 5_000)),
        retryMs: this.config.replicaRetryMs,
        name: `the replica in ${this.config.region}`,
        fallback: 'reads go to the primary',
        warn: this.warn,
      });
      this.route = route;
      // The sentinel: connected now, and kept connected, so a restart of the replica is seen
      // (and the first wait doesn't pay for connecting).
      this.poller.warm();
    } else {
      this.replicaPool = null;
      this.poller = null;
      this.tracker = null;
      this.route = null;
    }
  }

  /**
   * Runs one query, routed: reads to the local replica (after waiting for this context's
   * writes), writes to the primary (recording their commit LSN).
   */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    input: QueryInput,
    values?: unknown[],
    options?: QueryOptions,
  ): Promise<pg.QueryResult<R>> {
    // Not async: the common read takes no extra promise on its way to the replica.
    let config: pg.QueryConfig;
    try {
      config = normalize(input, values);
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.config.mode === 'single') return send<R>(this.primaryPool, config);
    const inspected = inspectSql(config.text);
    const info =
      options?.kind === 'write' && inspected.kind === 'read'
        ? { ...inspected, kind: 'write' as const }
        : inspected;
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
    if (on === 'primary' && info.kind === 'write') {
      return this.write(config, info, options) as Promise<pg.QueryResult<R>>;
    }
    if (on === 'primary' || !this.replicaPool) return this.readOnPrimary<R>(config, info);
    const target = this.knownReadTarget();
    if (target === 'replica') return this.readOnReplica<R>(config, info, options);
    if (target === 'primary') return this.readOnPrimary<R>(config, info);
    // One statement: ask the replica's position in its round trip.
    const needed = checksInRoundTrip(info) ? this.positionToCheck() : undefined;
    if (needed !== undefined) return this.readChecked<R>(config, info, needed, options);
    return this.readTarget().then((chosen) =>
      chosen === 'replica'
        ? this.readOnReplica<R>(config, info, options)
        : this.readOnPrimary<R>(config, info),
    );
  }

  /** Checks out a client; see {@link RegionalClient} for how it chooses its server. */
  async connect(options: { on?: Target } = {}): Promise<RegionalClient> {
    return new RegionalClient(this, options.on);
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
  async transaction<T>(
    fn: (tx: TransactionClient) => Promise<T>,
    options: TransactionOptions = {},
  ): Promise<T> {
    const { isolationLevel } = options;
    if (isolationLevel !== undefined && !ISOLATION_LEVELS.has(isolationLevel)) {
      throw new TypeError(
        `isolationLevel must be one of ${[...ISOLATION_LEVELS].join(', ')}; got ${isolationLevel}`,
      );
    }
    let on: Target = 'primary';
    let check: Lsn | undefined;
    if (options.readOnly && this.replicaPool && this.config.mode === 'multi') {
      // Read committed (the default is checked by the probe): its position is asked for with
      // the BEGIN, in one round trip.
      if (isolationLevel === undefined || isolationLevel === 'read committed')
        check = this.positionToCheck();
      on = check === undefined ? await this.readTarget() : 'replica';
    }
    let record = false;
    if (on === 'primary' && !options.readOnly) {
      if (this.forwardsWrites) throw forwardedTransactionError();
      record = currentContext().startWrite(options.await !== false);
    }
    const begin = [
      'BEGIN',
      isolationLevel ? `ISOLATION LEVEL ${isolationLevel.toUpperCase()}` : '',
      options.readOnly ? 'READ ONLY' : '',
    ]
      .filter(Boolean)
      .join(' ');
    const opened = await this.openTransaction(on, begin, check);
    on = opened.on;
    const client = opened.client;
    let releaseError: Error | undefined;
    try {
      const tx: TransactionClient = {
        on,
        client,
        query: (input, values) => send(client, normalize(input, values)),
      };
      let result: T;
      try {
        result = await fn(tx);
      } catch (error) {
        if (isConnectionFailure(error)) releaseError = error as Error;
        else await client.query('ROLLBACK');
        throw error;
      }
      if (on === 'replica' || this.config.mode === 'single') {
        await client.query('COMMIT');
        if (on === 'replica') this.counters.replicaReads++;
      } else {
        const context = currentContext();
        const { lsn, flushed } = await commitWithLsn(client);
        if (options.readOnly) this.counters.primaryReads++;
        else this.counters.writes++;
        if (lsn !== null && record) await this.observe(context, lsn);
        // What it read on the primary: later reads on a replica must see no less.
        else if (flushed !== null && this.recordsPrimaryReads(context) && options.await !== false)
          await this.observe(context, flushed);
      }
      return result;
    } catch (error) {
      if (isConnectionFailure(error)) {
        releaseError = error as Error;
        if (on === 'replica') this.replicaFailed(error);
        else
          throw primaryError(error, options.readOnly ? 'read' : 'write', this.errorOptions(client));
      }
      throw error;
    } finally {
      client.release(releaseError);
    }
  }

  /** Closes every connection. */
  async end(): Promise<void> {
    this.ended = true;
    this.route?.close();
    await Promise.all([this.primaryPool.end(), this.replicaPool?.end(), this.poller?.close()]);
  }

  stats(): RegionalPoolStats {
    const route = this.route?.stats();
    return {
      ...this.counters,
      replicaFailures: route?.failures ?? 0,
      replicaRestarts: route?.restarts ?? 0,
      tracker: this.tracker?.stats() ?? null,
    };
  }

  /**
   * The name of this database in consistency contexts and tokens: `pg:` and the cluster's
   * system identifier, shared by the primary and its replicas. Fetched once, on a connection of
   * its own (see {@link systemIdentifier}).
   */
  async sourceKey(): Promise<string> {
    if (this.source) return this.source;
    this.sourcePromise ??= (async () => {
      let result: pg.QueryResult<{ id: string }>;
      const replica = this.replicaPool && this.replicaUsable() ? this.replicaPool : null;
      try {
        result = await systemIdentifier(replica ?? this.primaryPool);
      } catch (error) {
        // The primary has the same identifier; a failed primary leaves nothing to ask.
        if (!replica) throw error;
        this.warn(
          `Could not read the cluster's system identifier from the replica in ${this.config.region} (${(error as Error)?.message ?? error}); asking the primary.`,
          error,
        );
        result = await systemIdentifier(this.primaryPool);
      }
      this.source = `pg:${(result.rows[0] as { id: string }).id}`;
      return this.source;
    })().finally(() => {
      this.sourcePromise = null;
    });
    return this.sourcePromise;
  }

  /**
   * Resolves once this region's replica has replayed `lsn` (at once where reads go to the
   * primary): what the HTTP layer uses to honour a client's token before the handler runs.
   */
  waitFor(lsn: Lsn, timeoutMs: number): Promise<number> {
    if (!this.tracker || !this.replicaUsable()) return Promise.resolve(0);
    return this.tracker.waitFor(lsn, timeoutMs);
  }

  /**
   * True where reads go to a replica: a read that needs a position the replica is not known to
   * have asks for its replay position in the same round trip (see {@link ReplicatedSource}).
   */
  get checksOnRead(): boolean {
    return this.tracker !== null;
  }

  /** True if this region's replica is known to have replayed `lsn` (always, without a replica). */
  hasReplayed(lsn: Lsn): boolean {
    return !this.tracker || this.tracker.hasReplayed(lsn);
  }

  /** @internal Records a commit position in `context`. */
  async observe(context: ConsistencyContext, lsn: Lsn): Promise<void> {
    context.observe(this.source ?? (await this.sourceKey()), lsn);
  }

  /** @internal A write outside any transaction, on the primary, with its commit LSN recorded. */
  async write(
    config: pg.QueryConfig,
    info: StatementInfo,
    options?: QueryOptions,
  ): Promise<pg.QueryResult | pg.QueryResult[]> {
    const context = currentContext();
    const record = context.startWrite(options?.await !== false);
    const committed = this.forwardsWrites
      ? await (this.forwarder ?? throwMissingForwarder()).forward(config, info.statements)
      : await this.writeDirect(config, info.statements);
    this.counters.writes++;
    if (committed.lsn !== null && record) await this.observe(context, committed.lsn);
    return committed.result;
  }

  /**
   * @internal Runs a write over this pool's own connection to the primary and returns result
   * and commit LSN, recording nothing: the forwarded-statement path of `regional/rpc` uses it.
   */
  async writeDirect(
    config: pg.QueryConfig & { rowMode?: 'array' },
    statements: number,
  ): Promise<CommittedWrite> {
    return this.onPrimaryConnection('write', (client) =>
      writeWithCommitLsn(client, config, statements),
    );
  }

  /**
   * Runs `work` on a connection to the primary. A connection found broken before anything was
   * sent (the server restarted while it sat idle) is replaced once; any other connection failure
   * becomes a `PrimaryUnavailableError` (or `QueryTimeoutError`) saying whether the statement
   * was sent, with the real cause.
   */
  private async onPrimaryConnection<T>(
    operation: 'read' | 'write',
    work: (client: pg.PoolClient) => Promise<T>,
  ): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      let client: pg.PoolClient;
      try {
        client = await this.primaryPool.connect();
      } catch (error) {
        throw primaryError(error, operation, { sent: false, queryTimeoutMs: this.queryTimeoutMs });
      }
      try {
        const result = await work(client);
        client.release();
        return result;
      } catch (error) {
        const broken = isConnectionFailure(error);
        client.release(broken ? (error as Error) : undefined);
        if (broken && attempt === 1 && unsent(error)) continue;
        throw primaryError(error, operation, this.errorOptions(client));
      }
    }
  }

  private errorOptions(client: pg.ClientBase): { client: pg.ClientBase; queryTimeoutMs: number } {
    return { client, queryTimeoutMs: this.queryTimeoutMs };
  }

  /** The primary's WAL flush position now: what a restarted replica must replay first. */
  private async primaryFlushLsn(): Promise<Lsn> {
    const { rows } = await this.primaryPool.query<{ lsn: string }>(
      'SELECT pg_current_wal_flush_lsn()::text AS lsn',
    );
    return parseLsn((rows[0] as { lsn: string }).lsn);
  }

  /**
   * @internal True if a read served by the primary must record the primary's position in `context`: in
   * a region with a replica (its later reads there must see no less: monotonic reads), and
   * wherever the context asks for it (a request replayed from a replica region).
   */
  recordsPrimaryReads(context: ConsistencyContext): boolean {
    return (
      this.config.mode === 'multi' &&
      !context.detached &&
      (this.tracker !== null || context.recordsReads)
    );
  }

  /** True where writes are forwarded rather than sent over a connection of this pool. */
  get forwardsWrites(): boolean {
    return (
      this.writeMode === 'forward' && this.config.mode === 'multi' && !this.config.isPrimaryRegion
    );
  }

  /** @internal Installs what carries writes in forward mode (`regional/rpc` does this). */
  setWriteForwarder(forwarder: WriteForwarder | null): void {
    this.forwarder = forwarder;
  }

  /**
   * @internal A read on the primary. Where {@link recordsPrimaryReads}, the primary's flush
   * position after it is read in the same round trip and recorded in the context.
   */
  readOnPrimary<R extends pg.QueryResultRow>(
    config: pg.QueryConfig,
    info?: StatementInfo,
  ): Promise<pg.QueryResult<R>> {
    this.counters.primaryReads++;
    const context = currentContext();
    if (!this.recordsPrimaryReads(context)) {
      return send<R>(this.primaryPool, config).catch((error: unknown) => {
        throw primaryError(error, 'read', { queryTimeoutMs: this.queryTimeoutMs });
      });
    }
    return this.readOnPrimaryRecorded<R>(config, info?.statements ?? 1, context);
  }

  private async readOnPrimaryRecorded<R extends pg.QueryResultRow>(
    config: pg.QueryConfig,
    statements: number,
    context: ConsistencyContext,
  ): Promise<pg.QueryResult<R>> {
    const { result, flushed } = await this.onPrimaryConnection('read', (client) =>
      writeWithCommitLsn(client, config, statements),
    );
    if (flushed != null) await this.observe(context, flushed);
    return result as pg.QueryResult<R>;
  }

  private readOnReplica<R extends pg.QueryResultRow>(
    config: pg.QueryConfig,
    info: StatementInfo,
    options?: QueryOptions,
  ): Promise<pg.QueryResult<R>> {
    return send<R>(this.replicaPool as pg.Pool, config).then(
      (result) => {
        this.counters.replicaReads++;
        return result;
      },
      (error: unknown) => this.replicaReadFailed<R>(error, config, info, options),
    );
  }

  /** A read failed on the replica: retried on the primary where that can help, else rethrown. */
  private replicaReadFailed<R extends pg.QueryResultRow>(
    error: unknown,
    config: pg.QueryConfig,
    info: StatementInfo,
    options?: QueryOptions,
  ): Promise<pg.QueryResult<R>> {
    if ((error as { code?: string }).code === READ_ONLY_SQL_TRANSACTION) {
      // It looked like a read but writes (a function that inserts, nextval()).
      this.counters.readOnlyRetries++;
      return this.write(config, { ...info, kind: 'write' }, options) as Promise<pg.QueryResult<R>>;
    }
    if (!isConnectionFailure(error)) return Promise.reject(error);
    this.replicaFailed(error);
    return this.readOnPrimary<R>(config, info);
  }

  /**
   * Checks out a connection on `on` and opens a transaction there with `begin`. With `check`
   * (on the replica), the BEGIN asks for the replica's position in the same round trip; if the
   * replica is behind (or cannot say), the transaction is rolled back, and opened again where
   * waiting like any read says.
   */
  private async openTransaction(
    on: Target,
    begin: string,
    check: Lsn | undefined,
  ): Promise<{ client: pg.PoolClient; on: Target }> {
    const client = on === 'replica' ? await this.checkoutReplica() : await this.connectPrimary();
    // The replica just failed (and is out of use): readTarget says primary.
    if (!client) return this.openTransaction(await this.readTarget(), begin, undefined);
    try {
      if (check === undefined) {
        await client.query(begin);
        return { client, on };
      }
      if (await this.beginChecked(client, begin, check)) return { client, on };
    } catch (error) {
      client.release(isConnectionFailure(error) ? (error as Error) : undefined);
      if (on === 'replica' && isConnectionFailure(error)) this.replicaFailed(error);
      if (on === 'primary') throw primaryError(error, 'write', this.errorOptions(client));
      throw error;
    }
    client.release();
    return this.openTransaction(await this.waitAfterCheck(check), begin, undefined);
  }

  /**
   * @internal The position a read on the replica should ask for in its own round trip: what
   * the context needs from this database, when the replica is not known to have it. `undefined`
   * when nothing needs asking, or when {@link readTarget} must decide (replica out of use or
   * lagging past the bound, the database's name not yet known).
   */
  positionToCheck(): Lsn | undefined {
    const tracker = this.tracker;
    if (!tracker || this.source === null || this.bounded.lagging || !this.replicaUsable())
      return undefined;
    const needed = currentContext().position(this.source);
    return needed === undefined || tracker.hasReplayed(needed) ? undefined : needed;
  }

  /**
   * @internal A connection to the primary; failing to get one is a `PrimaryUnavailableError`
   * (nothing was sent).
   */
  async connectPrimary(): Promise<pg.PoolClient> {
    try {
      return await this.primaryPool.connect();
    } catch (error) {
      throw primaryError(error, 'write', { sent: false, queryTimeoutMs: this.queryTimeoutMs });
    }
  }

  /**
   * @internal Runs one read on `client` (a replica connection) with the replica's position in
   * the same round trip: its result if the replica had `needed`, else `null` (wait with
   * {@link waitAfterCheck}, then read again).
   */
  async readCheckedOn(
    client: pg.PoolClient,
    config: pg.QueryConfig,
    needed: Lsn,
  ): Promise<pg.QueryResult | null> {
    const generation = (this.tracker as ReplayTracker).generation;
    const { result, replayed } = await readWithReplayLsn(client, config);
    return this.hadPosition(replayed, needed, generation) ? result : null;
  }

  /**
   * @internal Opens a transaction on `client` (a replica connection) with `begin`, asking for
   * the replica's position in the same round trip: the BEGIN's result if every statement of
   * the transaction will see `needed`, else `null` after rolling it back (wait with
   * {@link waitAfterCheck}, then begin again).
   */
  async beginChecked(
    client: pg.PoolClient,
    begin: string,
    needed: Lsn,
  ): Promise<pg.QueryResult | null> {
    const generation = (this.tracker as ReplayTracker).generation;
    const { result, replayed } = await beginWithReplayLsn(client, begin);
    if (this.hadPosition(replayed, needed, generation)) return result;
    await client.query('ROLLBACK');
    return null;
  }

  /** @internal After a check found the replica behind: wait like any read, within the bound. */
  waitAfterCheck(needed: Lsn): Promise<Target> {
    return this.bounded.replicaOrPrimary(this.tracker as ReplayTracker, needed, currentContext());
  }

  /**
   * What a checked read learnt: the tracker learns the position (unless it forgot since
   * `generation`), the counters the outcome.
   */
  private hadPosition(replayed: Lsn | null, needed: Lsn, generation: number): boolean {
    if (replayed === null) return false;
    (this.tracker as ReplayTracker).observe(replayed, generation);
    if (replayed >= needed) {
      this.counters.checkedReads++;
      return true;
    }
    this.counters.checkedReadsBehind++;
    return false;
  }

  /**
   * A read when the context needs `needed` and the replica is not known to have it: the read
   * and `pg_last_wal_replay_lsn()` go in one round trip. If the replica had it, that is the
   * answer (and nobody polled); if not, the read waits like any other and runs again.
   */
  private async readChecked<R extends pg.QueryResultRow>(
    config: pg.QueryConfig,
    info: StatementInfo,
    needed: Lsn,
    options?: QueryOptions,
  ): Promise<pg.QueryResult<R>> {
    const client = await this.checkoutReplica();
    if (!client) return this.readOnPrimary<R>(config, info);
    const generation = (this.tracker as ReplayTracker).generation;
    let checked: Awaited<ReturnType<typeof readWithReplayLsn>>;
    try {
      checked = await readWithReplayLsn(client, config);
    } catch (error) {
      client.release(isConnectionFailure(error) ? (error as Error) : undefined);
      return this.replicaReadFailed<R>(error, config, info, options);
    }
    client.release();
    if (this.hadPosition(checked.replayed, needed, generation)) {
      this.counters.replicaReads++;
      return checked.result as pg.QueryResult<R>;
    }
    // The replica was behind when the read ran: its answer may be stale. Wait, then read again.
    const chosen = await this.waitAfterCheck(needed);
    return chosen === 'replica'
      ? this.readOnReplica<R>(config, info, options)
      : this.readOnPrimary<R>(config, info);
  }

  /**
   * Where a read can run without waiting or asking anything: `replica` when the context has
   * nothing the replica is not known to have, `primary` when the replica is out of use, and
   * `null` when only {@link readTarget} can tell.
   */
  private knownReadTarget(): Target | null {
    if (!this.replicaUsable()) return 'primary';
    if (this.source === null || !this.tracker) return null;
    const target = currentContext().position(this.source);
    return target === undefined || this.tracker.hasReplayed(target) ? 'replica' : null;
  }

  /**
   * @internal Where a read in the current context should run: waits until the local replica
   * has replayed the context's position, or chooses the primary (replica down, lagging past
   * the bound), or throws per the `error` policy.
   */
  async readTarget(): Promise<Target> {
    const tracker = this.tracker;
    if (!tracker || !this.replicaUsable()) return 'primary';
    const context = currentContext();
    const source = this.source ?? (await this.sourceKey());
    const target = context.position(source);
    if (target === undefined || tracker.hasReplayed(target)) return 'replica';
    return this.bounded.replicaOrPrimary(tracker, target, context);
  }

  /** @internal A replica connection, or `null` (and the replica marked down) if it cannot be had. */
  async checkoutReplica(): Promise<pg.PoolClient | null> {
    try {
      return await (this.replicaPool as pg.Pool).connect();
    } catch (error) {
      if (!isConnectionFailure(error)) throw error;
      this.replicaFailed(error);
      return null;
    }
  }

  /** @internal */
  replicaUsable(): boolean {
    return this.route?.usable() ?? false;
  }

  /**
   * @internal Sends reads to the primary for `replicaRetryMs`, then tries the replica again;
   * what the replica was known to have is forgotten (its process may be restarting).
   */
  replicaFailed(error: unknown): void {
    if (this.ended) return;
    this.route?.failed(error);
  }

  /** @internal */
  countWrite(): void {
    this.counters.writes++;
  }

  /** @internal */
  countReplicaRead(): void {
    this.counters.replicaReads++;
  }

  /** @internal */
  countPrimaryRead(): void {
    this.counters.primaryReads++;
  }

  private idleError(which: Target, error: Error): void {
    // Connections still closing after end() may see their server go away: nothing to report.
    if (this.ended) return;
    // An idle connection died (server restarted, network cut). node-postgres drops it from the
    // pool; say so, and let listeners see it, but don't take the process down. (A replica's
    // connections report to replicaFailed through their own listener.)
    if (this.listenerCount('error') > 0) this.emit('error', error);
    else if (which === 'primary')
      this.warn(`An idle connection to the primary failed: ${error.message}`);
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

function throwMissingForwarder(): never {
  throw missingForwarderError();
}

/**
 * @internal True if a read can ask for the replica's position in its own round trip: one
 * statement (named or not), as a checked read is a pipeline around exactly one.
 */
export function checksInRoundTrip(info: StatementInfo): boolean {
  return info.statements <= 1;
}
