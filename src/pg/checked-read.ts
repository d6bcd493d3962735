import type pg from 'pg';
import { type Lsn, parseLsn } from '../core/lsn.js';
import { Pipeline, runPipeline } from './pipeline.js';
import { REPLAY_LSN_QUERY } from './replay-poller.js';

/**
 * Runs a read on a replica connection with `pg_last_wal_replay_lsn()` just before it, in one
 * round trip. The position is read before the statement takes its snapshot, so the statement
 * sees at least everything replayed up to it: when that position is at or after what the
 * context needs, the result is consistent and nobody had to poll the replica first.
 *
 * `replayed` is `null` when the server does not say (it is not a replica).
 *
 * @example
 * const { result, replayed } = await readWithReplayLsn(client, { text: 'SELECT …', values });
 * if (replayed !== null && replayed >= needed) return result; // else wait, and read again
 */
export async function readWithReplayLsn(
  client: pg.PoolClient,
  config: pg.QueryConfig & { rowMode?: 'array' },
): Promise<{ result: pg.QueryResult; replayed: Lsn | null }> {
  const { result, probes } = await runPipeline(
    client,
    new Pipeline(config, [{ text: REPLAY_LSN_QUERY, returnsRow: true }], []),
  );
  const replayed = probes[0];
  return { result, replayed: replayed ? parseLsn(replayed) : null };
}
