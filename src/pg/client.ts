import type pg from 'pg';
import { currentContext } from '../core/context.js';
import type { Lsn } from '../core/lsn.js';
import { inspectSql, type StatementInfo } from './classify.js';
import { commitWithLsn, isConnectionFailure, writeWithCommitLsn } from './commit-lsn.js';
import { primaryError } from './connections.js';
import { forwardedTransactionError } from './forwarding.js';
import {
  checksInRoundTrip,
  normalize,
  type QueryInput,
  type QueryOptions,
  type RegionalPool,
  send,
  type Target,
} from './pool.js';

/**
 * A checked-out client, as `pool.connect()` gives with `pg.Pool`. Unless pinned with
 * `pool.connect({ on })`, it chooses its server statement by statement, the way the pool
 * does: reads on the local replica, writes on the primary; a transaction (`BEGIN` … `COMMIT`)
 * stays on the one server it started on — the replica for `BEGIN READ ONLY`, else the
 * primary — and its `COMMIT` records the commit LSN. A read (or `BEGIN READ ONLY`) that needs
 * a write the replica is not known to have asks for the replica's position in its own round
 * trip, as `pool.query` does.
 *
 * Moving between servers starts a new session: settings made with `SET`, temporary tables
 * and prepared statements do not follow. Pin the client (`{ on: 'primary' }`) to keep them.
 *
 * @example
 * const client = await pool.connect();
 * try {
 *   await client.query('BEGIN');
 *   await client.query('UPDATE accounts SET balance = balance - $1 WHERE id = $2', [10, from]);
 *   await client.query('UPDATE accounts SET balance = balance + $1 WHERE id = $2', [10, to]);
 *   await client.query('COMMIT');
 * } finally {
 *   client.release();
 * }
 */
export class RegionalClient {
  private bound: { on: Target; client: pg.PoolClient } | null = null;
  private released = false;

  /** @internal */
  constructor(
    private readonly pool: RegionalPool,
    private readonly pinned: Target | undefined,
  ) {}

  /** The server this client is connected to right now, if any. */
  get on(): Target | null {
    return this.bound?.on ?? null;
  }

  async query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    input: QueryInput,
    values?: unknown[],
    options?: QueryOptions,
  ): Promise<pg.QueryResult<R>> {
    if (this.released)
      throw new Error('This client was released; check out another with pool.connect()');
    const config = normalize(input, values);
    const pool = this.pool;
    const multi = pool.config.mode === 'multi';
    const inspected = inspectSql(config.text);
    const info =
      options?.kind === 'write' && inspected.kind === 'read'
        ? { ...inspected, kind: 'write' as const }
        : inspected;
    const bound = this.bound;

    if (bound && bound.client.getTransactionStatus() !== 'I') {
      // Inside a transaction: everything stays on its server.
      if (info.control === 'commit' && bound.on === 'primary' && multi) {
        const { result, lsn, flushed } = await this.guard(bound, commitWithLsn(bound.client));
        pool.countWrite();
        const context = currentContext();
        if (options?.await !== false && !context.detached) {
          if (lsn !== null) await pool.observe(context, lsn);
          // It read on the primary: later reads on a replica must see no less.
          else if (flushed !== null && pool.recordsPrimaryReads(context))
            await pool.observe(context, flushed);
        }
        return result as pg.QueryResult<R>;
      }
      return this.guard(bound, send<R>(bound.client, config));
    }

    const chosen = options?.on ?? this.pinned;
    let on: Target = chosen ?? (info.kind === 'read' ? 'replica' : 'primary');
    if (!multi || (on === 'replica' && !pool.replicaPool)) on = 'primary';
    let check: Lsn | undefined;
    if (on === 'replica' && !chosen) {
      check = checksOnReplica(config, info) ? pool.positionToCheck() : undefined;
      if (check === undefined) on = await pool.readTarget();
    }
    if (on === 'primary' && info.kind === 'write' && pool.forwardsWrites) {
      // Forward mode: single writes travel to the primary region; a transaction cannot.
      if (info.control === 'begin' || info.control === 'other') throw forwardedTransactionError();
      if (!info.control) return pool.write(config, info, options) as Promise<pg.QueryResult<R>>;
    }
    return this.run<R>(config, info, options, on, chosen, check);
  }

  /** Runs a statement outside a transaction on `on`; with `check`, checked on the replica. */
  private async run<R extends pg.QueryResultRow>(
    config: pg.QueryConfig,
    info: StatementInfo,
    options: QueryOptions | undefined,
    on: Target,
    chosen: Target | undefined,
    check: Lsn | undefined,
  ): Promise<pg.QueryResult<R>> {
    const pool = this.pool;
    const record =
      on === 'primary' &&
      info.kind === 'write' &&
      currentContext().startWrite(options?.await !== false);
    const client = await this.bind(on);
    const current = this.bound as { on: Target; client: pg.PoolClient };

    if (pool.config.mode === 'multi' && current.on === 'primary' && !info.control) {
      const context = currentContext();
      if (info.kind === 'write') {
        const committed = await this.guard(
          current,
          writeWithCommitLsn(client, config, info.statements),
        );
        pool.countWrite();
        if (committed.lsn !== null && record) await pool.observe(context, committed.lsn);
        return committed.result as pg.QueryResult<R>;
      }
      if (pool.recordsPrimaryReads(context)) {
        // A read on the primary records the primary's position after it, in its round trip.
        const read = await this.guard(current, writeWithCommitLsn(client, config, info.statements));
        pool.countPrimaryRead();
        if (read.flushed != null) await pool.observe(context, read.flushed);
        return read.result as pg.QueryResult<R>;
      }
    }
    let result: pg.QueryResult<R> | null;
    try {
      result =
        check !== undefined && current.on === 'replica'
          ? ((await this.guard(
              current,
              info.control === 'begin'
                ? pool.beginChecked(client, config.text, check)
                : pool.readCheckedOn(client, config, check),
            )) as pg.QueryResult<R> | null)
          : await this.guard(current, send<R>(client, config));
    } catch (error) {
      const retryOnPrimary =
        current.on === 'replica' &&
        !chosen &&
        !info.control &&
        ((error as { code?: string }).code === '25006' || isConnectionFailure(error));
      if (!retryOnPrimary) throw error;
      if (isConnectionFailure(error)) pool.replicaFailed(error);
      await this.bind('primary');
      return this.query<R>(config, undefined, { ...options, on: 'primary' });
    }
    if (result === null) {
      // A checked statement found the replica behind: wait like any read, then run it again.
      const target = await pool.waitAfterCheck(check as Lsn);
      return this.run<R>(config, info, options, target, chosen, undefined);
    }
    if (current.on === 'replica') pool.countReplicaRead();
    else if (info.kind === 'read' && !info.control) pool.countPrimaryRead();
    return result;
  }

  /** Returns the connection to its pool; pass an error to discard a broken connection. */
  release(error?: Error | boolean): void {
    if (this.released) return;
    this.released = true;
    this.unbind(error);
  }

  private async bind(on: Target): Promise<pg.PoolClient> {
    if (this.bound?.on === on) return this.bound.client;
    this.unbind();
    let client: pg.PoolClient | null;
    if (on === 'replica') {
      client = await this.pool.checkoutReplica();
      if (!client) return this.bind('primary');
    } else {
      client = await this.pool.connectPrimary();
    }
    this.bound = { on, client };
    return client;
  }

  private unbind(error?: Error | boolean): void {
    const bound = this.bound;
    this.bound = null;
    if (!bound) return;
    // Never hand a connection in an open transaction back to the pool.
    const dirty = !error && bound.client.getTransactionStatus() !== 'I';
    bound.client.release(dirty ? new Error('released inside a transaction') : error);
  }

  /**
   * Runs `work` on `bound`; a broken connection is dropped so the next query gets a new one. A
   * broken connection to the primary is a `PrimaryUnavailableError` with the real cause.
   */
  private async guard<T>(
    bound: { on: Target; client: pg.PoolClient },
    work: Promise<T>,
  ): Promise<T> {
    try {
      return await work;
    } catch (error) {
      if (!isConnectionFailure(error)) throw error;
      if (this.bound === bound) this.unbind(error as Error);
      if (bound.on === 'replica') throw error;
      const inTransaction = bound.client.getTransactionStatus() !== 'I';
      throw primaryError(error, inTransaction ? 'write' : 'read', {
        client: bound.client,
        queryTimeoutMs: this.pool.queryTimeoutMs,
      });
    }
  }
}

/**
 * True if a statement on the replica can ask for the replica's position in its own round
 * trip: a single read, or a `BEGIN … READ ONLY` that does not name an isolation level above
 * read committed (under those the probe would take the transaction's snapshot itself).
 */
function checksOnReplica(config: pg.QueryConfig, info: StatementInfo): boolean {
  if (info.control === 'begin') return !/\b(repeatable|serializable)\b/i.test(config.text);
  return !info.control && checksInRoundTrip(info);
}
