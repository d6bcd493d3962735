import type postgres from 'postgres';
import type { StatementInfo } from '../core/classify.js';
import type { RegionalConfig } from '../core/config.js';
import { type ConsistencyContext, currentContext } from '../core/context.js';
import { PrimaryUnavailableError, RegionalError } from '../core/errors.js';
import { parseLsn } from '../core/lsn.js';
import {
  errorIsAnswer,
  type KeySource,
  READ_ONLY_SQL_TRANSACTION,
  ReadCounter,
  type ReplicaRoute,
} from '../core/route.js';
import type { RouteReason, SourceTelemetry } from '../core/telemetry.js';
import {
  type Handler,
  handlerOf,
  isConnectionFailure,
  type QueryInternals,
  runOn,
  unsent,
} from './queries.js';

type Sql = postgres.Sql<Record<string, unknown>>;

const FLUSH_LSN = 'select pg_current_wal_flush_lsn()::text as lsn';
const REPLAY_LSN = 'select pg_last_wal_replay_lsn()::text as lsn';

export interface DispatcherOptions {
  config: RegionalConfig;
  primary: Sql;
  /** This region's replica (`null` where reads go to the primary). */
  replica: Sql | null;
  route: ReplicaRoute | null;
  key: KeySource;
  telemetry: SourceTelemetry;
}

/** What a query turned into: its result, or its error. */
type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/**
 * Holds `query`'s outcome instead of delivering it: resolves with it, and gives back the
 * query's own `resolve`/`reject` to deliver it with later (after what came with it is known).
 */
function hold(query: QueryInternals): Promise<Outcome> {
  const { resolve, reject } = query;
  return new Promise((done) => {
    query.resolve = (value) => {
      query.resolve = resolve;
      query.reject = reject;
      done({ ok: true, value });
    };
    query.reject = (error) => {
      query.resolve = resolve;
      query.reject = reject;
      done({ ok: false, error });
    };
  });
}

function deliver(query: QueryInternals, outcome: Outcome): void {
  if (outcome.ok) query.resolve(outcome.value);
  else query.reject(outcome.error);
}

/**
 * Where each postgres.js query runs, as the route says, and what it records: the node-postgres
 * driver's reader and writer for postgres.js. A write runs on a reserved primary connection
 * with `pg_current_wal_flush_lsn()` right behind it (postgres.js ends every query with its own
 * Sync, so the write has committed when the position is read; one round trip when the write is
 * a prepared statement); a read that must check the replica runs behind
 * `pg_last_wal_replay_lsn()` on a reserved replica connection; a read the replica cannot serve
 * goes to the primary, which records its position where later replica reads must see no less.
 */
export class Dispatcher extends ReadCounter {
  /** Writes sent to the primary (statements and committed transactions). */
  writes = 0;
  /** Reads the replica refused as writes (SQLSTATE 25006), retried on the primary. */
  readOnlyRetries = 0;
  private readonly primaryHandler: Handler;
  private readonly replicaHandler: Handler | null;

  constructor(private readonly options: DispatcherOptions) {
    super(options.route, options.telemetry);
    this.primaryHandler = handlerOf(options.primary);
    this.replicaHandler = options.replica ? handlerOf(options.replica) : null;
  }

  get route(): ReplicaRoute | null {
    return this.options.route;
  }

  get primary(): Sql {
    return this.options.primary;
  }

  get replica(): Sql | null {
    return this.options.replica;
  }

  /** The handler of every query Regional's `sql` makes: runs it where it belongs. */
  run(query: QueryInternals, info: StatementInfo): void {
    if (this.options.config.mode === 'single') {
      runOn(this.primaryHandler, query);
      return;
    }
    if (info.control) {
      query.reject(
        new RegionalError(
          'REGIONAL_TRANSACTION_ON_POOL',
          `"${(query.strings[0] ?? '').slice(0, 40)}" controls a transaction, but each query may run on another connection. Use sql.begin(fn) or sql.reserve().`,
        ),
      );
      return;
    }
    const context = currentContext();
    const work = () =>
      info.kind === 'write'
        ? this.write(query, context, info.lock ? 'lock' : 'write')
        : this.read(query, info, context);
    this.options.telemetry
      .traced(query.strings[0] ?? '', work)
      .catch((error: unknown) => query.reject(error));
  }

  /** Records `position` of this database in `context`. */
  record(context: ConsistencyContext, position: bigint): void | Promise<void> {
    const key = this.options.key.known;
    if (key !== null) {
      context.observe(key, position);
      return;
    }
    return this.options.key.get().then((known) => void context.observe(known, position));
  }

  /**
   * True if a read served by the primary must record the primary's position in `context` (see
   * the node-postgres driver's reader).
   */
  recordsPrimaryReads(context: ConsistencyContext): boolean {
    return (
      this.options.config.mode === 'multi' &&
      !context.detached &&
      (this.options.route !== null || context.recordsReads)
    );
  }

  /** Counts a write (a statement, or a committed transaction) sent to the primary. */
  wrote(reason: RouteReason): void {
    this.writes++;
    this.options.telemetry.routed('primary', reason);
  }

  /** A reserved connection on the primary; failing to get one is a `PrimaryUnavailableError`. */
  async reservePrimary(operation: 'read' | 'write'): Promise<postgres.ReservedSql> {
    try {
      return await this.options.primary.reserve();
    } catch (error) {
      throw this.primaryError(error, operation, false);
    }
  }

  /** `error` as the Regional error it is when the primary or the connection failed. */
  primaryError(error: unknown, operation: 'read' | 'write', sent?: boolean): unknown {
    if (!isConnectionFailure(error)) return error;
    return new PrimaryUnavailableError(operation, sent ?? !unsent(error), { cause: error });
  }

  /** A write outside any transaction: on the primary, its commit position recorded. */
  async write(
    query: QueryInternals,
    context: ConsistencyContext,
    reason: RouteReason = 'write',
  ): Promise<void> {
    const record = context.startWrite(true);
    if (!record) {
      this.options.telemetry.routed('primary', reason);
      return this.plain(query, this.primaryHandler, 'write');
    }
    const reserved = await this.reservePrimary('write');
    try {
      const { outcome, position } = await this.withProbe(reserved, query, FLUSH_LSN, 'after');
      if (!outcome.ok) {
        return query.reject(this.primaryError(outcome.error, 'write'));
      }
      if (position === undefined) {
        // Committed, but the position did not come back: this context could not read it back.
        return query.reject(
          new PrimaryUnavailableError('write', true, {
            cause: new Error('the connection broke after the write, before its commit position'),
          }),
        );
      }
      this.wrote(reason);
      if (position !== null) await this.record(context, position);
      deliver(query, outcome);
    } finally {
      reserved.release();
    }
  }

  /** A read, where the route says: the replica (checked, if it must be), or the primary. */
  async read(
    query: QueryInternals,
    info: StatementInfo,
    context: ConsistencyContext,
  ): Promise<void> {
    const route = this.options.route;
    if (!route) return this.onPrimary(query, context);
    switch (route.plan(context)) {
      case 'replica':
        return this.onReplica(query, context);
      case 'primary':
        return this.onPrimary(query, context, 'replica_down');
      case 'check':
        if (info.statements <= 1) return this.checked(query, route.needed(context), context);
        break;
    }
    const target = await route.choose(context);
    return target === 'replica'
      ? this.onReplica(query, context)
      : this.onPrimary(query, context, this.fallbackReason());
  }

  /** A read on the primary, recording the primary's position where later reads need it. */
  async onPrimary(
    query: QueryInternals,
    context: ConsistencyContext,
    reason?: RouteReason,
  ): Promise<void> {
    this.served('primary', reason);
    if (!this.recordsPrimaryReads(context)) return this.plain(query, this.primaryHandler, 'read');
    const reserved = await this.reservePrimary('read');
    try {
      const { outcome, position } = await this.withProbe(reserved, query, FLUSH_LSN, 'after');
      if (!outcome.ok) return query.reject(this.primaryError(outcome.error, 'read'));
      if (position != null) await this.record(context, position);
      deliver(query, outcome);
    } finally {
      reserved.release();
    }
  }

  private async onReplica(query: QueryInternals, context: ConsistencyContext): Promise<void> {
    const outcome = hold(query);
    runOn(this.replicaHandler as Handler, query);
    const result = await outcome;
    if (result.ok) {
      this.served('replica');
      return deliver(query, result);
    }
    return this.replicaFailed(query, result.error, context);
  }

  /**
   * A read when the context needs `needed` and the replica is not known to have it: the
   * replica's position and the read go in one round trip, on one reserved connection. If the
   * replica had it, that is the answer; if not, the read waits like any other and runs again.
   */
  private async checked(
    query: QueryInternals,
    needed: bigint,
    context: ConsistencyContext,
  ): Promise<void> {
    const route = this.options.route as ReplicaRoute;
    let reserved: postgres.ReservedSql;
    try {
      reserved = await (this.options.replica as Sql).reserve();
    } catch (error) {
      if (!isConnectionFailure(error)) throw error;
      route.failed(error);
      return this.onPrimary(query, context, 'replica_down');
    }
    const generation = route.generation;
    let outcome: Outcome;
    let position: bigint | null | undefined;
    try {
      ({ outcome, position } = await this.withProbe(reserved, query, REPLAY_LSN, 'before'));
    } finally {
      reserved.release();
    }
    // A broken connection, or no position (the probe failed too): the replica failed.
    if (!outcome.ok && (position === undefined || isConnectionFailure(outcome.error)))
      return this.replicaFailed(query, outcome.error, context);
    this.options.telemetry.checked();
    const caughtUp = route.checked(position ?? null, needed, generation);
    if (!outcome.ok && errorIsAnswer(outcome.error, caughtUp))
      return this.replicaFailed(query, outcome.error, context);
    if (caughtUp) {
      this.served('replica');
      return deliver(query, outcome);
    }
    // The replica was behind when the read ran: its answer (or its error) may be stale. Wait,
    // then read again.
    const target = await route.afterCheck(needed, context);
    return target === 'replica'
      ? this.onReplica(query, context)
      : this.onPrimary(query, context, this.fallbackReason());
  }

  /** A read failed on the replica: retried on the primary where that can help, else rejected. */
  private async replicaFailed(
    query: QueryInternals,
    error: unknown,
    context: ConsistencyContext,
  ): Promise<void> {
    if ((error as { code?: string }).code === READ_ONLY_SQL_TRANSACTION) {
      // It looked like a read but writes (a function that inserts, nextval()).
      this.readOnlyRetries++;
      return this.write(query, context, 'read_only_retry');
    }
    if (!isConnectionFailure(error)) return query.reject(error);
    this.options.route?.failed(error);
    return this.onPrimary(query, context, 'replica_down');
  }

  /** Runs `query` as it is on `handler`, connection failures turned into Regional's errors. */
  private async plain(
    query: QueryInternals,
    handler: Handler,
    operation: 'read' | 'write',
  ): Promise<void> {
    const outcome = hold(query);
    runOn(handler, query);
    const result = await outcome;
    if (result.ok) return deliver(query, result);
    query.reject(
      handler === this.primaryHandler ? this.primaryError(result.error, operation) : result.error,
    );
  }

  /**
   * Runs `query` on `reserved` with `probe` (a one-row position query) right before or after it,
   * both sent at once: the query's outcome, and the position (`null` if the server has none,
   * `undefined` if the probe failed).
   */
  private async withProbe(
    reserved: postgres.ReservedSql,
    query: QueryInternals,
    probeText: string,
    order: 'before' | 'after',
  ): Promise<{ outcome: Outcome; position: bigint | null | undefined }> {
    const probe = reserved.unsafe(probeText) as unknown as QueryInternals &
      Promise<{ lsn: string | null }[]>;
    const handler = probe.handler;
    const outcome = hold(query);
    if (order === 'before') runOn(handler, probe);
    runOn(handler, query);
    if (order === 'after') runOn(handler, probe);
    const [result, rows] = await Promise.all([
      outcome,
      probe.then(
        (r) => r,
        () => undefined,
      ),
    ]);
    const lsn = rows?.[0]?.lsn;
    return {
      outcome: result,
      position: rows === undefined ? undefined : lsn ? parseLsn(lsn) : null,
    };
  }
}
