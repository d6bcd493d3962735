import type pg from 'pg';
import type { RegionalConfig } from '../core/config.js';
import { currentContext } from '../core/context.js';
import type { Target } from '../core/route.js';
import { commitWithLsn, isConnectionFailure } from './commit-lsn.js';
import { forwardedTransactionError } from './forwarding.js';
import type { Reader } from './reader.js';
import { normalize, type QueryInput, send } from './statement.js';
import type { Writer } from './writer.js';

export interface TransactionOptions {
  /**
   * A read-only transaction runs on the local replica (after this context's writes, like any
   * read: under read committed its `BEGIN` asks for the replica's position in the same round
   * trip; otherwise it waits first); a read-write one (the default) runs on the primary.
   */
  readOnly?: boolean;
  isolationLevel?: 'read committed' | 'repeatable read' | 'serializable';
  /** Record the commit position so this context's later reads see it (default `true`). */
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

const ISOLATION_LEVELS = new Set(['read committed', 'repeatable read', 'serializable']);

/** What a transaction runs with: the pool's reader and writer. */
export interface TransactionDeps {
  config: RegionalConfig;
  reader: Reader;
  writer: Writer;
}

/**
 * Runs `fn` in a transaction on one connection and commits, or rolls back if it throws: on the
 * primary, recording the commit LSN (or, if it wrote nothing, the position it read at); or,
 * read-only, on the local replica.
 */
export async function runTransaction<T>(
  deps: TransactionDeps,
  fn: (tx: TransactionClient) => Promise<T>,
  options: TransactionOptions = {},
): Promise<T> {
  const { config, reader, writer } = deps;
  const { isolationLevel } = options;
  if (isolationLevel !== undefined && !ISOLATION_LEVELS.has(isolationLevel)) {
    throw new TypeError(
      `isolationLevel must be one of ${[...ISOLATION_LEVELS].join(', ')}; got ${isolationLevel}`,
    );
  }
  const route = reader.route;
  let on: Target = 'primary';
  let check: bigint | undefined;
  if (options.readOnly && route && config.mode === 'multi') {
    const context = currentContext();
    const plan = route.plan(context);
    // Read committed (the default is checked by the probe): its position is asked for with
    // the BEGIN, in one round trip.
    const checkable = isolationLevel === undefined || isolationLevel === 'read committed';
    if (plan === 'check' && checkable) {
      on = 'replica';
      check = route.needed(context);
    } else if (plan === 'replica' || plan === 'primary') on = plan;
    else on = await route.choose(context);
  }
  let record = false;
  if (on === 'primary' && !options.readOnly) {
    if (writer.forwardsWrites) throw forwardedTransactionError();
    record = currentContext().startWrite(options.await !== false);
  }
  const begin = [
    'BEGIN',
    isolationLevel ? `ISOLATION LEVEL ${isolationLevel.toUpperCase()}` : '',
    options.readOnly ? 'READ ONLY' : '',
  ]
    .filter(Boolean)
    .join(' ');
  const opened = await open(deps, on, begin, check);
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
    if (on === 'replica' || config.mode === 'single') {
      await client.query('COMMIT');
      if (on === 'replica') reader.served('replica', 'read');
    } else {
      const context = currentContext();
      const { lsn, flushed } = await commitWithLsn(client);
      if (options.readOnly) reader.served('primary');
      else writer.wrote('transaction');
      if (lsn !== null && record) await writer.record(context, lsn);
      // What it read on the primary: later reads on a replica must see no less.
      else if (flushed !== null && reader.recordsPrimaryReads(context) && options.await !== false)
        await writer.record(context, flushed);
    }
    return result;
  } catch (error) {
    if (isConnectionFailure(error)) {
      releaseError = error as Error;
      if (on === 'replica') route?.failed(error);
      else throw writer.error(error, options.readOnly ? 'read' : 'write', client);
    }
    throw error;
  } finally {
    client.release(releaseError);
  }
}

/**
 * Checks out a connection on `on` and opens a transaction there with `begin`. With `check` (on
 * the replica), the BEGIN asks for the replica's position in the same round trip; if the
 * replica is behind (or cannot say), the transaction is rolled back, and opened again where
 * waiting like any read says.
 */
async function open(
  deps: TransactionDeps,
  on: Target,
  begin: string,
  check: bigint | undefined,
): Promise<{ client: pg.PoolClient; on: Target }> {
  const { reader, writer } = deps;
  const route = reader.route;
  const client = on === 'replica' ? await reader.checkoutReplica() : await writer.connect();
  // The replica just failed (and is out of use): the route says primary.
  if (!client)
    return open(deps, route ? await route.choose(currentContext()) : 'primary', begin, undefined);
  try {
    if (check === undefined) {
      await client.query(begin);
      return { client, on };
    }
    if (await reader.beginChecked(client, begin, check)) return { client, on };
  } catch (error) {
    client.release(isConnectionFailure(error) ? (error as Error) : undefined);
    if (on === 'replica' && isConnectionFailure(error)) route?.failed(error);
    if (on === 'primary') throw writer.error(error, 'write', client);
    throw error;
  }
  client.release();
  const target = await (route as NonNullable<typeof route>).afterCheck(check, currentContext());
  return open(deps, target, begin, undefined);
}
