import type pg from 'pg';
import { type Lsn, parseLsn } from '../core/lsn.js';
import { isConnectionFailure } from './commit-lsn.js';
import { COMMIT, Pipeline, type Probe, runPipeline } from './pipeline.js';
import { REPLAY_LSN_QUERY } from './replay-poller.js';

// Read committed whatever the session's default: each statement then takes its own snapshot,
// so the read's snapshot comes after the replay position was read. (Under repeatable read the
// snapshot would be taken at the probe, before the position it reports.)
const BEGIN_READ_COMMITTED: Probe = {
  text: 'BEGIN ISOLATION LEVEL READ COMMITTED',
  returnsRow: false,
};
const REPLAY_LSN: Probe = { text: REPLAY_LSN_QUERY, returnsRow: true };

/**
 * A checked read's answer: the statement's result, or the SQL error it failed with, and the
 * replica's position read just before it (`null`: the server did not say).
 */
export type CheckedRead =
  | { result: pg.QueryResult; error?: undefined; replayed: Lsn | null }
  | { result?: undefined; error: Error; replayed: Lsn | null };

/**
 * Runs a read on a replica connection with `pg_last_wal_replay_lsn()` just before it, in one
 * round trip. The position is read before the statement takes its snapshot, so the statement
 * sees at least everything replayed up to it: when that position is at or after what the
 * context needs, the result is consistent and nobody had to poll the replica first.
 *
 * If the statement itself fails, its error is returned with the position, not thrown: on a
 * replica that was behind, the error may come from state not replayed yet (a table this
 * context just created), as stale as an old row. Any other failure is thrown. The connection
 * is rolled back either way.
 *
 * @example
 * const { result, error, replayed } = await readWithReplayLsn(client, { text: 'SELECT …', values });
 * if (replayed !== null && replayed >= needed) return error ? Promise.reject(error) : result;
 * // else wait, and read again
 */
export async function readWithReplayLsn(
  client: pg.PoolClient,
  config: pg.QueryConfig & { rowMode?: 'array' },
): Promise<CheckedRead> {
  const pipeline = new Pipeline(config, [BEGIN_READ_COMMITTED, REPLAY_LSN], [COMMIT]);
  // Probes: BEGIN, the replay position, COMMIT.
  try {
    return await runChecked(client, pipeline, 1, () => pipeline.failedBefore(COMMIT));
  } catch (error) {
    if (!pipeline.failedAtStatement() || isConnectionFailure(error)) throw error;
    const replayed = pipeline.probe(1);
    return { error: error as Error, replayed: replayed ? parseLsn(replayed) : null };
  }
}

// Inside a transaction the probe must also say whether later statements take snapshots of
// their own: under repeatable read or serializable the transaction's one snapshot is taken by
// this probe, possibly before the position it reports, so it reports nothing (NULL).
const REPLAY_LSN_IF_READ_COMMITTED: Probe = {
  text: "SELECT CASE WHEN current_setting('transaction_isolation') = 'read committed' THEN pg_last_wal_replay_lsn()::text END",
  returnsRow: true,
};

/**
 * Opens a transaction on a replica connection with `begin` (a `BEGIN … READ ONLY`) and reads
 * `pg_last_wal_replay_lsn()` inside it, in one round trip. Under read committed each statement
 * the transaction runs next takes its snapshot after that position was read, so sees at least
 * everything replayed up to it.
 *
 * `replayed` is `null` when that cannot be said: the transaction is not read committed, or the
 * server is not a replica. The transaction is open either way; the caller decides whether to
 * keep it. If the probe fails, the transaction is rolled back before the error is thrown.
 *
 * @example
 * const { replayed } = await beginWithReplayLsn(client, 'BEGIN READ ONLY');
 * if (replayed === null || replayed < needed) await client.query('ROLLBACK'); // wait, begin again
 */
export async function beginWithReplayLsn(
  client: pg.PoolClient,
  begin: string,
): Promise<{ result: pg.QueryResult; replayed: Lsn | null }> {
  const pipeline = new Pipeline({ text: begin }, [], [REPLAY_LSN_IF_READ_COMMITTED]);
  return runChecked(client, pipeline, 0, () => pipeline.failedAt(REPLAY_LSN_IF_READ_COMMITTED));
}

/**
 * Runs `pipeline` and reads the replay position from its probe number `probe`. If it fails
 * while `leftOpen()` says its transaction block is still open, rolls that back first.
 */
async function runChecked(
  client: pg.PoolClient,
  pipeline: Pipeline,
  probe: number,
  leftOpen: () => boolean,
): Promise<{ result: pg.QueryResult; replayed: Lsn | null }> {
  let outcome: Awaited<ReturnType<typeof runPipeline>>;
  try {
    outcome = await runPipeline(client, pipeline);
  } catch (error) {
    if (leftOpen() && !isConnectionFailure(error)) await client.query('ROLLBACK');
    throw error;
  }
  const replayed = outcome.probes[probe];
  return { result: outcome.result, replayed: replayed ? parseLsn(replayed) : null };
}
