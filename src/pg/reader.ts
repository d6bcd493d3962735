import type pg from 'pg';
import type { StatementInfo } from '../core/classify.js';
import type { RegionalConfig } from '../core/config.js';
import { type ConsistencyContext, currentContext } from '../core/context.js';
import {
  errorIsAnswer,
  READ_ONLY_SQL_TRANSACTION,
  ReadCounter,
  type ReplicaRoute,
} from '../core/route.js';
import type { RouteReason, SourceTelemetry } from '../core/telemetry.js';
import { beginWithReplayLsn, type CheckedRead, readWithReplayLsn } from './checked-read.js';
import { isConnectionFailure, writeWithCommitLsn } from './commit-lsn.js';
import { checksInRoundTrip, type QueryConfig, type QueryOptions, send } from './statement.js';
import type { Writer } from './writer.js';

export interface ReaderOptions {
  config: RegionalConfig;
  primaryPool: pg.Pool;
  /** This region's replica (`null` where reads go to the primary). */
  replicaPool: pg.Pool | null;
  /** Where reads go (`null` without a replica). */
  route: ReplicaRoute | null;
  /** For a read the replica refuses as a write (SQLSTATE 25006). */
  writer: Writer;
  telemetry: SourceTelemetry;
}

/**
 * How a pool's reads run, where its route says: on the local replica — checked in their own
 * round trip when the context needs a position the replica is not known to have — or on the
 * primary, recording the primary's position where later reads on a replica must see no less.
 * A read the replica cannot serve (it is down, or refuses the statement as a write) is retried
 * on the primary.
 *
 * @example
 * const result = await reader.read(config, info); // replica, checked, waited, or primary
 */
export class Reader extends ReadCounter {
  /** Reads the replica refused as writes (SQLSTATE 25006), retried on the primary. */
  readOnlyRetries = 0;

  constructor(private readonly options: ReaderOptions) {
    super(options.route, options.telemetry);
  }

  get route(): ReplicaRoute | null {
    return this.options.route;
  }

  /**
   * A read routed as the context needs: at once to the replica or the primary, checked in its
   * own round trip, or after waiting within the bound. Not async: the common read takes no extra
   * promise on its way to the replica.
   */
  read<R extends pg.QueryResultRow>(
    config: QueryConfig,
    info: StatementInfo,
    options?: QueryOptions,
  ): Promise<pg.QueryResult<R>> {
    const route = this.options.route;
    if (!route) return this.onPrimary<R>(config, info);
    const context = currentContext();
    switch (route.plan(context)) {
      case 'replica':
        return this.onReplica<R>(config, info, options);
      case 'primary':
        return this.onPrimary<R>(config, info, 'replica_down');
      case 'check':
        if (checksInRoundTrip(info))
          return this.checked<R>(config, info, route.needed(context), options);
        break;
    }
    return route
      .choose(context)
      .then((target) =>
        target === 'replica'
          ? this.onReplica<R>(config, info, options)
          : this.onPrimary<R>(config, info, this.fallbackReason()),
      );
  }

  /**
   * A read on the primary. Where {@link recordsPrimaryReads}, the primary's flush position after
   * it is read in the same round trip and recorded in the context.
   */
  onPrimary<R extends pg.QueryResultRow>(
    config: QueryConfig,
    info?: StatementInfo,
    reason?: RouteReason,
  ): Promise<pg.QueryResult<R>> {
    this.served('primary', reason);
    const context = currentContext();
    if (!this.recordsPrimaryReads(context)) {
      return send<R>(this.options.primaryPool, config).catch((error: unknown) => {
        throw this.options.writer.error(error, 'read');
      });
    }
    return this.onPrimaryRecorded<R>(config, info?.statements ?? 1, context);
  }

  /**
   * True if a read served by the primary must record the primary's position in `context`: in
   * a region with a replica (its later reads there must see no less: monotonic reads), and
   * wherever the context asks for it (a request replayed from a replica region).
   */
  recordsPrimaryReads(context: ConsistencyContext): boolean {
    return (
      this.options.config.mode === 'multi' &&
      !context.detached &&
      (this.options.route !== null || context.recordsReads)
    );
  }

  /** A replica connection, or `null` (and the replica marked down) if it cannot be had. */
  async checkoutReplica(): Promise<pg.PoolClient | null> {
    try {
      return await (this.options.replicaPool as pg.Pool).connect();
    } catch (error) {
      if (!isConnectionFailure(error)) throw error;
      this.options.route?.failed(error);
      return null;
    }
  }

  /**
   * Runs one read on `client` (a replica connection) with the replica's position in the same
   * round trip: its result if the replica had `needed`, else `null` (wait with the route's
   * `afterCheck`, then read again). Its SQL error is thrown where it is the answer
   * (see {@link errorIsAnswer}).
   */
  async readCheckedOn(
    client: pg.PoolClient,
    config: pg.QueryConfig,
    needed: bigint,
  ): Promise<pg.QueryResult | null> {
    const route = this.options.route as ReplicaRoute;
    const generation = route.generation;
    const checked = await readWithReplayLsn(client, config);
    this.options.telemetry.checked();
    const caughtUp = route.checked(checked.replayed, needed, generation);
    if (checked.error && errorIsAnswer(checked.error, caughtUp)) throw checked.error;
    return caughtUp ? (checked.result as pg.QueryResult) : null;
  }

  /**
   * Opens a transaction on `client` (a replica connection) with `begin`, asking for the
   * replica's position in the same round trip: the BEGIN's result if every statement of the
   * transaction will see `needed`, else `null` after rolling it back.
   */
  async beginChecked(
    client: pg.PoolClient,
    begin: string,
    needed: bigint,
  ): Promise<pg.QueryResult | null> {
    const route = this.options.route as ReplicaRoute;
    const generation = route.generation;
    const { result, replayed } = await beginWithReplayLsn(client, begin);
    this.options.telemetry.checked();
    if (route.checked(replayed, needed, generation)) return result;
    await client.query('ROLLBACK');
    return null;
  }

  private async onPrimaryRecorded<R extends pg.QueryResultRow>(
    config: QueryConfig,
    statements: number,
    context: ConsistencyContext,
  ): Promise<pg.QueryResult<R>> {
    const writer = this.options.writer;
    const { result, flushed } = await writer.onPrimary('read', (client) =>
      writeWithCommitLsn(client, config, statements),
    );
    if (flushed != null) await writer.record(context, flushed);
    return result as pg.QueryResult<R>;
  }

  private onReplica<R extends pg.QueryResultRow>(
    config: QueryConfig,
    info: StatementInfo,
    options?: QueryOptions,
  ): Promise<pg.QueryResult<R>> {
    return send<R>(this.options.replicaPool as pg.Pool, config).then(
      (result) => {
        this.served('replica');
        return result;
      },
      (error: unknown) => this.replicaFailed<R>(error, config, info, options),
    );
  }

  /**
   * A read when the context needs `needed` and the replica is not known to have it: the read
   * and `pg_last_wal_replay_lsn()` go in one round trip. If the replica had it, that is the
   * answer (and nobody polled); if not, the read waits like any other and runs again.
   */
  private async checked<R extends pg.QueryResultRow>(
    config: QueryConfig,
    info: StatementInfo,
    needed: bigint,
    options?: QueryOptions,
  ): Promise<pg.QueryResult<R>> {
    const route = this.options.route as ReplicaRoute;
    const client = await this.checkoutReplica();
    if (!client) return this.onPrimary<R>(config, info, 'replica_down');
    const generation = route.generation;
    let checked: CheckedRead;
    try {
      checked = await readWithReplayLsn(client, config);
    } catch (error) {
      client.release(isConnectionFailure(error) ? (error as Error) : undefined);
      return this.replicaFailed<R>(error, config, info, options);
    }
    client.release();
    this.options.telemetry.checked();
    const caughtUp = route.checked(checked.replayed, needed, generation);
    if (checked.error && errorIsAnswer(checked.error, caughtUp))
      return this.replicaFailed<R>(checked.error, config, info, options);
    if (caughtUp) {
      this.served('replica');
      return checked.result as pg.QueryResult<R>;
    }
    // The replica was behind when the read ran: its answer (or its error) may be stale. Wait,
    // then read again.
    const target = await route.afterCheck(needed, currentContext());
    return target === 'replica'
      ? this.onReplica<R>(config, info, options)
      : this.onPrimary<R>(config, info, this.fallbackReason());
  }

  /** A read failed on the replica: retried on the primary where that can help, else rethrown. */
  private replicaFailed<R extends pg.QueryResultRow>(
    error: unknown,
    config: QueryConfig,
    info: StatementInfo,
    options?: QueryOptions,
  ): Promise<pg.QueryResult<R>> {
    if ((error as { code?: string }).code === READ_ONLY_SQL_TRANSACTION) {
      // It looked like a read but writes (a function that inserts, nextval()).
      this.readOnlyRetries++;
      return this.options.writer.write(
        config,
        { ...info, kind: 'write' },
        options,
        'read_only_retry',
      ) as Promise<pg.QueryResult<R>>;
    }
    if (!isConnectionFailure(error)) return Promise.reject(error);
    this.options.route?.failed(error);
    return this.onPrimary<R>(config, info, 'replica_down');
  }
}
