import pg from 'pg';
import { parseLsn } from '../core/lsn.js';
import type { PositionPoller } from '../core/tracker.js';

/** How far a replica has replayed; `NULL` on a server that is not a replica. */
export const REPLAY_LSN_QUERY = 'SELECT pg_last_wal_replay_lsn()::text AS lsn';

/**
 * A poller for the replay tracker: one dedicated connection to the replica (not from the
 * pool, so polls never queue behind application queries), asking `pg_last_wal_replay_lsn()`
 * once per call. A failed or aborted poll drops the connection; the next poll reconnects.
 */
export function replayLsnPoller(
  config: pg.ClientConfig,
): PositionPoller & { warm(): void; close(): Promise<void> } {
  let client: pg.Client | null = null;
  let connecting: Promise<pg.Client> | null = null;

  const drop = (broken: pg.Client) => {
    if (client === broken) client = null;
    broken.removeAllListeners('error');
    broken.on('error', () => {});
    void broken.end().catch(() => {});
  };

  const connect = (): Promise<pg.Client> => {
    if (client) return Promise.resolve(client);
    connecting ??= (async () => {
      const fresh = new pg.Client({ ...config, application_name: 'regional-replay-tracker' });
      // An idle connection that dies is dropped; the next poll reconnects.
      fresh.on('error', () => drop(fresh));
      try {
        await fresh.connect();
      } catch (error) {
        drop(fresh);
        throw error;
      }
      client = fresh;
      return fresh;
    })().finally(() => {
      connecting = null;
    });
    return connecting;
  };

  const poll = async (signal: AbortSignal): Promise<bigint> => {
    const current = await connect();
    const onAbort = () => drop(current);
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      const { rows } = await current.query<{ lsn: string | null }>(REPLAY_LSN_QUERY);
      const lsn = rows[0]?.lsn;
      if (!lsn) {
        throw new Error(
          'pg_last_wal_replay_lsn() is NULL: the server at DATABASE_REPLICA_URL is not a replica (it is a primary)',
        );
      }
      return parseLsn(lsn);
    } catch (error) {
      drop(current);
      throw error;
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  };

  return Object.assign(poll, {
    /** Opens the connection ahead of the first wait, so that wait does not pay for it. */
    warm() {
      connect().catch(() => {});
    },
    async close() {
      const current = client;
      client = null;
      if (current) await current.end().catch(() => {});
    },
  });
}
