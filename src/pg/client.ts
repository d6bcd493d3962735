import { EventEmitter } from 'node:events';
import type pg from 'pg';
import type { StatementInfo } from '../core/classify.js';
import { currentContext } from '../core/context.js';
import { READ_ONLY_SQL_TRANSACTION, type Target } from '../core/route.js';
import type { RouteReason } from '../core/telemetry.js';
import { commitWithLsn, isConnectionFailure, writeWithCommitLsn } from './commit-lsn.js';
import { forwardedTransactionError } from './forwarding.js';
import {
  checksInRoundTrip,
  normalize,
  type QueryConfig,
  type QueryInput,
  type QueryOptions,
  send,
  statementInfo,
} from './statement.js';
import type { TransactionDeps } from './transaction.js';
import { writeReason } from './writer.js';

/** The connection a client holds right now, and on which server. */
interface Bound {
  on: Target;
  client: pg.PoolClient;
  /** Passes the connection's errors on to this client's listeners. */
  forward: (error: Error) => void;
}

let open: (deps: TransactionDeps, pinned: Target | undefined) => RegionalClient;

/**
 * A checked-out client, as `pool.connect()` gives with `pg.Pool`. Unless pinned with
 * `pool.connect({ on })`, it chooses its server statement by statement, the way the pool
 * does: reads on the local replica, writes on the primary; a transaction (`BEGIN` … `COMMIT`)
 * stays on the one server it started on — the replica for `BEGIN READ ONLY`, else the
 * primary — and its `COMMIT` records the commit LSN. A read (or `BEGIN READ ONLY`) that needs
 * a write the replica is not known to have asks for the replica's position in its own round
 * trip, as `pool.query` does.
 *
 * Like a `pg.PoolClient` it emits `'error'` when the connection it holds breaks (to listeners,
 * if any: without one nothing is thrown, and the next query reports the cause).
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
export class RegionalClient extends EventEmitter {
  static {
    open = (deps, pinned) => new RegionalClient(deps, pinned);
  }

  readonly #deps: TransactionDeps;
  readonly #pinned: Target | undefined;
  #bound: Bound | null = null;
  #released = false;

  private constructor(deps: TransactionDeps, pinned: Target | undefined) {
    super();
    this.#deps = deps;
    this.#pinned = pinned;
  }

  /** The server this client is connected to right now, if any. */
  get server(): Target | null {
    return this.#bound?.on ?? null;
  }

  async query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    input: QueryInput,
    values?: unknown[],
    options?: QueryOptions,
  ): Promise<pg.QueryResult<R>> {
    if (this.#released)
      throw new Error('This client was released; check out another with pool.connect()');
    const config = normalize(input, values);
    const { config: settings, reader, writer } = this.#deps;
    const multi = settings.mode === 'multi';
    const info = statementInfo(config.text, options?.kind);
    const bound = this.#bound;

    if (bound && bound.client.getTransactionStatus() !== 'I') {
      // Inside a transaction: everything stays on its server.
      if (info.control === 'commit' && bound.on === 'primary' && multi) {
        const { result, lsn, flushed } = await this.#guard(bound, commitWithLsn(bound.client));
        writer.wrote('transaction');
        const context = currentContext();
        if (options?.await !== false && !context.detached) {
          if (lsn !== null) await writer.record(context, lsn);
          // It read on the primary: later reads on a replica must see no less.
          else if (flushed !== null && reader.recordsPrimaryReads(context))
            await writer.record(context, flushed);
        }
        return result as pg.QueryResult<R>;
      }
      return this.#guard(bound, send<R>(bound.client, config));
    }

    const chosen = options?.on ?? this.#pinned;
    const route = reader.route;
    let on: Target = chosen ?? (info.kind === 'read' ? 'replica' : 'primary');
    if (!multi || (on === 'replica' && !route)) on = 'primary';
    let check: bigint | undefined;
    if (on === 'replica' && !chosen && route) {
      const context = currentContext();
      const plan = route.plan(context);
      if (plan === 'check' && checksOnReplica(config, info)) check = route.needed(context);
      else if (plan === 'replica' || plan === 'primary') on = plan;
      else on = await route.choose(context);
    }
    if (on === 'primary' && info.kind === 'write' && writer.forwardsWrites) {
      // Forward mode: single writes travel to the primary region; a transaction cannot.
      if (info.control === 'begin' || info.control === 'other') throw forwardedTransactionError();
      if (!info.control) return writer.write(config, info, options) as Promise<pg.QueryResult<R>>;
    }
    return this.#run<R>(config, info, options, on, chosen, check);
  }

  /** Returns the connection to its pool; pass an error to discard a broken connection. */
  release(error?: Error | boolean): void {
    if (this.#released) return;
    this.#released = true;
    this.#unbind(error);
  }

  /**
   * Runs a statement outside a transaction on `on`; with `check`, checked on the replica.
   * `retried` says why a read the replica could not serve runs again on the primary.
   */
  async #run<R extends pg.QueryResultRow>(
    config: QueryConfig,
    info: StatementInfo,
    options: QueryOptions | undefined,
    on: Target,
    chosen: Target | undefined,
    check: bigint | undefined,
    retried?: RouteReason,
  ): Promise<pg.QueryResult<R>> {
    const { config: settings, reader, writer } = this.#deps;
    const record =
      on === 'primary' &&
      info.kind === 'write' &&
      currentContext().startWrite(options?.await !== false);
    const client = await this.#bind(on);
    const current = this.#bound as Bound;

    if (settings.mode === 'multi' && current.on === 'primary' && !info.control) {
      const context = currentContext();
      if (info.kind === 'write') {
        const committed = await this.#guard(
          current,
          writeWithCommitLsn(client, config, info.statements),
        );
        writer.wrote(chosen ? 'forced' : writeReason(info));
        if (committed.lsn !== null && record) await writer.record(context, committed.lsn);
        return committed.result as pg.QueryResult<R>;
      }
      if (reader.recordsPrimaryReads(context)) {
        // A read on the primary records the primary's position after it, in its round trip.
        const read = await this.#guard(
          current,
          writeWithCommitLsn(client, config, info.statements),
        );
        reader.served('primary', retried ?? (chosen ? 'forced' : undefined));
        if (read.flushed != null) await writer.record(context, read.flushed);
        return read.result as pg.QueryResult<R>;
      }
    }
    let result: pg.QueryResult<R> | null;
    try {
      result =
        check !== undefined && current.on === 'replica'
          ? ((await this.#guard(
              current,
              info.control === 'begin'
                ? reader.beginChecked(client, config.text, check)
                : reader.readCheckedOn(client, config, check),
            )) as pg.QueryResult<R> | null)
          : await this.#guard(current, send<R>(client, config));
    } catch (error) {
      const retryOnPrimary =
        current.on === 'replica' &&
        !chosen &&
        !info.control &&
        ((error as { code?: string }).code === READ_ONLY_SQL_TRANSACTION ||
          isConnectionFailure(error));
      if (!retryOnPrimary) throw error;
      const failed = isConnectionFailure(error);
      if (failed) reader.route?.failed(error);
      await this.#bind('primary');
      const why = failed ? 'replica_down' : 'read_only_retry';
      return this.#run<R>(config, info, options, 'primary', undefined, undefined, why);
    }
    if (result === null) {
      // A checked statement found the replica behind: wait like any read, then run it again.
      const route = reader.route as NonNullable<typeof reader.route>;
      const target = await route.afterCheck(check as bigint, currentContext());
      return this.#run<R>(config, info, options, target, chosen, undefined);
    }
    if (current.on === 'replica') reader.served('replica');
    else if (info.kind === 'read' && !info.control)
      reader.served('primary', retried ?? (chosen ? 'forced' : undefined));
    return result;
  }

  async #bind(on: Target): Promise<pg.PoolClient> {
    if (this.#bound?.on === on) return this.#bound.client;
    this.#unbind();
    const { reader, writer } = this.#deps;
    let client: pg.PoolClient | null;
    if (on === 'replica') {
      client = await reader.checkoutReplica();
      if (!client) return this.#bind('primary');
    } else {
      client = await writer.connect();
    }
    const forward = (error: Error) => {
      if (this.listenerCount('error') > 0) this.emit('error', error);
    };
    client.on('error', forward);
    this.#bound = { on, client, forward };
    return client;
  }

  #unbind(error?: Error | boolean): void {
    const bound = this.#bound;
    this.#bound = null;
    if (!bound) return;
    bound.client.removeListener('error', bound.forward);
    // Never hand a connection in an open transaction back to the pool.
    const dirty = !error && bound.client.getTransactionStatus() !== 'I';
    bound.client.release(dirty ? new Error('released inside a transaction') : error);
  }

  /**
   * Runs `work` on `bound`; a broken connection is dropped so the next query gets a new one. A
   * broken connection to the primary is a `PrimaryUnavailableError` with the real cause.
   */
  async #guard<T>(bound: Bound, work: Promise<T>): Promise<T> {
    try {
      return await work;
    } catch (error) {
      if (!isConnectionFailure(error)) throw error;
      if (this.#bound === bound) this.#unbind(error as Error);
      if (bound.on === 'replica') throw error;
      const inTransaction = bound.client.getTransactionStatus() !== 'I';
      throw this.#deps.writer.error(error, inTransaction ? 'write' : 'read', bound.client);
    }
  }
}

/** A client of the pool `deps` belong to, pinned to `pinned` if given. */
export function openClient(deps: TransactionDeps, pinned: Target | undefined): RegionalClient {
  return open(deps, pinned);
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
