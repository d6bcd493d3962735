import type postgres from 'postgres';
import { inspectSql } from '../core/classify.js';
import { type ConsistencyContext, currentContext } from '../core/context.js';
import { PrimaryUnavailableError, RegionalError } from '../core/errors.js';
import { parseLsn } from '../core/lsn.js';
import type { Target } from '../core/route.js';
import type { Dispatcher } from './dispatch.js';
import {
  type Handler,
  isConnectionFailure,
  type QueryInternals,
  runOn,
  textOf,
} from './queries.js';

type Sql = postgres.Sql<Record<string, unknown>>;
type TransactionSql = postgres.TransactionSql<Record<string, unknown>>;

const FLUSH_LSN = 'select pg_current_wal_flush_lsn()::text as lsn';
// The replica's position, only where every later statement takes a snapshot of its own.
const REPLAY_LSN_IF_READ_COMMITTED =
  "select case when current_setting('transaction_isolation') = 'read committed' then pg_last_wal_replay_lsn()::text end as lsn";

/** What `begin`'s options say: read-only or not, and the text to begin with. */
function parseOptions(options: string): { readOnly: boolean; begin: string; checkable: boolean } {
  const clean = options.replace(/[^a-z ]/gi, '').trim();
  const lower = clean.toLowerCase();
  return {
    readOnly: /\bread only\b/.test(lower),
    begin: `begin ${clean}`.trim(),
    checkable: !/\b(repeatable|serializable)\b/.test(lower),
  };
}

/**
 * `sql.begin([options,] fn)` as Regional runs it: a read-write transaction on a reserved primary
 * connection whose COMMIT and `pg_current_wal_flush_lsn()` go in one round trip (postgres.js's
 * own `begin` sends its COMMIT alone, which would cost a round trip more to learn the commit's
 * position); a `read only` one on the replica, after this context's writes (its BEGIN asks the
 * replica's position in the same round trip under read committed).
 */
export async function begin<T>(
  dispatcher: Dispatcher,
  options: string,
  fn: (sql: TransactionSql) => T | Promise<T>,
): Promise<T> {
  const { readOnly, begin: beginText, checkable } = parseOptions(options);
  const context = currentContext();
  const route = dispatcher.route;
  if (!readOnly) {
    const record = context.startWrite(true);
    return onPrimary(dispatcher, beginText, fn, context, record ? 'write' : 'none');
  }
  if (!route) return onPrimary(dispatcher, beginText, fn, context, 'read');
  const plan = route.plan(context);
  let target: Target;
  if (plan === 'check' && checkable) {
    const needed = route.needed(context);
    const ran = await onReplicaChecked(dispatcher, beginText, fn, needed);
    if (ran.done) return ran.result as T;
    target = await route.afterCheck(needed, context);
  } else if (plan === 'replica' || plan === 'primary') target = plan;
  else target = await route.choose(context);
  if (target === 'primary') return onPrimary(dispatcher, beginText, fn, context, 'read');
  const replica = await reserveReplica(dispatcher);
  if (!replica) return onPrimary(dispatcher, beginText, fn, context, 'read');
  try {
    await replica.unsafe(beginText);
    const result = await scope(replica, fn);
    await replica.unsafe('commit');
    dispatcher.served('replica');
    return result;
  } catch (error) {
    await rollback(replica);
    if (isConnectionFailure(error)) route.failed(error);
    throw error;
  } finally {
    replica.release();
  }
}

async function reserveReplica(dispatcher: Dispatcher): Promise<postgres.ReservedSql | null> {
  try {
    return await (dispatcher.replica as Sql).reserve();
  } catch (error) {
    if (!isConnectionFailure(error)) throw error;
    dispatcher.route?.failed(error);
    return null;
  }
}

/**
 * A read-only transaction on the replica whose BEGIN asks the replica's position in the same
 * round trip: run to the end if the replica had `needed`, else rolled back (`done: false`).
 */
async function onReplicaChecked<T>(
  dispatcher: Dispatcher,
  beginText: string,
  fn: (sql: TransactionSql) => T | Promise<T>,
  needed: bigint,
): Promise<{ done: boolean; result?: T }> {
  const route = dispatcher.route as NonNullable<Dispatcher['route']>;
  const replica = await reserveReplica(dispatcher);
  if (!replica) return { done: false };
  try {
    const generation = route.generation;
    const beginQuery = replica.unsafe(beginText) as unknown as QueryInternals & Promise<unknown>;
    const probe = replica.unsafe(REPLAY_LSN_IF_READ_COMMITTED) as unknown as QueryInternals &
      Promise<{ lsn: string | null }[]>;
    runOn(beginQuery.handler, beginQuery);
    runOn(probe.handler, probe);
    await beginQuery;
    const lsn = (await probe)[0]?.lsn;
    if (!route.checked(lsn ? parseLsn(lsn) : null, needed, generation)) {
      await replica.unsafe('rollback');
      return { done: false };
    }
    const result = await scope(replica, fn);
    await replica.unsafe('commit');
    dispatcher.served('replica');
    return { done: true, result };
  } catch (error) {
    await rollback(replica);
    if (isConnectionFailure(error)) route.failed(error);
    throw error;
  } finally {
    replica.release();
  }
}

/**
 * A transaction on a reserved primary connection; its COMMIT and the flush position after it
 * in one round trip, the position recorded as a write's (`write`) or as what a read saw
 * (`read`, where later replica reads need it).
 */
async function onPrimary<T>(
  dispatcher: Dispatcher,
  beginText: string,
  fn: (sql: TransactionSql) => T | Promise<T>,
  context: ConsistencyContext,
  records: 'write' | 'read' | 'none',
): Promise<T> {
  const reserved = await dispatcher.reservePrimary(records === 'read' ? 'read' : 'write');
  let committing = false;
  try {
    await reserved.unsafe(beginText);
    const result = await scope(reserved, fn);
    committing = true;
    const commit = reserved.unsafe('commit') as unknown as QueryInternals &
      Promise<{ command?: string } & unknown[]>;
    const probe = reserved.unsafe(FLUSH_LSN) as unknown as QueryInternals &
      Promise<{ lsn: string }[]>;
    runOn(commit.handler, commit);
    runOn(probe.handler, probe);
    const committed = await commit;
    if ((committed as { command?: string }).command === 'ROLLBACK') {
      throw new RegionalError(
        'REGIONAL_TRANSACTION_ROLLED_BACK',
        'The transaction was rolled back: a statement in it failed, and its error was caught inside the transaction.',
      );
    }
    const lsn = (await probe)[0]?.lsn;
    if (records === 'write') dispatcher.wrote('transaction');
    else dispatcher.served('primary');
    const record = records === 'write' || dispatcher.recordsPrimaryReads(context);
    if (lsn && record && records !== 'none') await dispatcher.record(context, parseLsn(lsn));
    return result;
  } catch (error) {
    if (!committing) await rollback(reserved);
    const operation = records === 'read' ? 'read' : 'write';
    if (isConnectionFailure(error))
      throw new PrimaryUnavailableError(operation, true, { cause: error });
    throw error;
  } finally {
    reserved.release();
  }
}

async function rollback(reserved: postgres.ReservedSql): Promise<void> {
  await reserved.unsafe('rollback').catch(() => {});
}

/**
 * Runs `fn` with a transaction's `sql` on `reserved` (the transaction already begun): every
 * query on that connection, `savepoint` for nested transactions. As postgres.js does, a query
 * that failed inside fails the transaction even if `fn` caught its error.
 */
async function scope<T>(
  reserved: postgres.ReservedSql,
  fn: (sql: TransactionSql) => T | Promise<T>,
  savepoint?: string,
): Promise<T> {
  let uncaught: unknown;
  let savepoints = 0;
  const base = (reserved`select 1` as unknown as QueryInternals).handler;
  const handler: Handler = (query) => {
    (query as unknown as Promise<unknown>).catch((error: unknown) => {
      uncaught ??= error;
    });
    base(query);
  };
  const track = <Q>(query: Q): Q => {
    (query as unknown as QueryInternals).handler = handler;
    return query;
  };
  const sql = Object.assign(
    (first: unknown, ...rest: unknown[]) => {
      const made = (reserved as unknown as (...a: unknown[]) => unknown)(first, ...rest);
      return Array.isArray((first as { raw?: unknown })?.raw) ? track(made) : made;
    },
    reserved,
    {
      unsafe: (text: string, args?: unknown[], options?: object) =>
        track(reserved.unsafe(text, args as never[], options)),
      savepoint: (name: unknown, body?: (sql: TransactionSql) => unknown) => {
        const fnBody = (typeof name === 'function' ? name : body) as (
          sql: TransactionSql,
        ) => unknown;
        const label = `s${savepoints++}${typeof name === 'string' ? `_${name.replace(/[^a-z0-9_]/gi, '')}` : ''}`;
        return scope(reserved, fnBody, label);
      },
      prepare: () => {
        throw new RegionalError(
          'REGIONAL_UNSUPPORTED',
          'sql.prepare (two-phase commit) is not supported by regional/postgres.',
        );
      },
    },
  ) as unknown as TransactionSql;

  if (savepoint) await reserved.unsafe(`savepoint ${savepoint}`);
  try {
    const result = await fn(sql);
    if (uncaught !== undefined) throw uncaught;
    return result;
  } catch (error) {
    if (savepoint) await reserved.unsafe(`rollback to savepoint ${savepoint}`);
    throw (error as { code?: string })?.code === '25P02' && uncaught !== undefined
      ? uncaught
      : error;
  }
}

/**
 * `sql.reserve()` as Regional runs it: one connection to the primary, for session state
 * (`SET`, temporary tables, advisory locks). Writes outside a transaction, and every COMMIT,
 * read the flush position right after in the same round trip and record it.
 */
export async function reserve(dispatcher: Dispatcher): Promise<postgres.ReservedSql> {
  const reserved = await dispatcher.reservePrimary('write');
  const base = (reserved`select 1` as unknown as QueryInternals).handler;
  let inTransaction = false;
  const handler: Handler = (query) => {
    const info = inspectSql(textOf(query));
    if (info.control === 'begin') inTransaction = true;
    const ends = info.control === 'commit' || info.control === 'rollback';
    if (ends) inTransaction = false;
    const context = currentContext();
    const records =
      (info.control === 'commit' || (!inTransaction && !info.control && info.kind === 'write')) &&
      context.startWrite(true);
    if (!records) return base(query);
    // The statement, then its position, both sent at once; the result waits for the position.
    const { resolve, reject } = query;
    const probe = reserved.unsafe(FLUSH_LSN) as unknown as QueryInternals &
      Promise<{ lsn: string }[]>;
    let result: unknown;
    query.resolve = (value) => {
      result = value;
    };
    query.reject = (error) => {
      query.resolve = resolve;
      query.reject = reject;
      reject(dispatcher.primaryError(error, 'write'));
    };
    base(query);
    runOn(probe.handler, probe);
    probe.then(
      async (rows) => {
        query.resolve = resolve;
        query.reject = reject;
        if (result === undefined) return;
        const lsn = rows[0]?.lsn;
        if (lsn) await dispatcher.record(context, parseLsn(lsn));
        dispatcher.wrote('transaction');
        resolve(result);
      },
      (error: unknown) => {
        query.resolve = resolve;
        query.reject = reject;
        // Done, but without its position this context could not read it back: say so.
        if (result !== undefined)
          reject(new PrimaryUnavailableError('write', true, { cause: error }));
      },
    );
  };
  const track = <Q>(query: Q): Q => {
    (query as unknown as QueryInternals).handler = handler;
    return query;
  };
  return Object.assign(
    (first: unknown, ...rest: unknown[]) => {
      const made = (reserved as unknown as (...a: unknown[]) => unknown)(first, ...rest);
      return Array.isArray((first as { raw?: unknown })?.raw) ? track(made) : made;
    },
    reserved,
    {
      unsafe: (text: string, args?: unknown[], options?: object) =>
        track(reserved.unsafe(text, args as never[], options)),
      release: () => reserved.release(),
    },
  ) as unknown as postgres.ReservedSql;
}
