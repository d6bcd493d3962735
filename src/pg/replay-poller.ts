import pg from 'pg';
import { parseLsn } from '../core/lsn.js';
import { type LagSample, untraced } from '../core/telemetry.js';
import type { PositionPoller } from '../core/tracker.js';

/** How far a replica has replayed; `NULL` on a server that is not a replica. */
/**
 * How far behind the replica is in time: 0 when it has replayed all it received (an idle
 * primary sends nothing, and the last replayed transaction only gets older), else the age of
 * the last transaction it replayed (how postgres_exporter measures it); and its replay position.
 */
export const REPLICA_LAG_SQL = `SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
  ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8 END AS seconds,
  pg_last_wal_replay_lsn()::text AS replayed`;

export interface LagRow {
  seconds: number | string | null;
  replayed: string | null;
}

/** The lag gauges' sample from {@link REPLICA_LAG_SQL}'s row and the primary's position. */
export function lagSample(row: LagRow | undefined, primary: bigint): LagSample | null {
  if (!row || row.replayed === null) return null;
  const behind = primary - parseLsn(row.replayed);
  return { seconds: Number(row.seconds ?? 0), bytes: behind > 0n ? Number(behind) : 0 };
}

export const REPLAY_LSN_QUERY = 'SELECT pg_last_wal_replay_lsn()::text AS lsn';

// The start time names the server process: a replica that restarted is another process, whose
// replay position can be behind what the old one showed.
const POLL_QUERY =
  'SELECT pg_last_wal_replay_lsn()::text AS lsn, pg_postmaster_start_time()::text AS epoch';

/** What the poller tells about its connection to the replica. */
export interface ReplicaConnectionEvents {
  /** Connected (again) to the replica process started at `epoch`. */
  onConnect(epoch: string): void;
  /** The connection broke or was dropped: the replica may be restarting. */
  onLost(error: unknown): void;
}

export interface ReplayLsnPoller extends PositionPoller {
  /** Opens the connection ahead of the first wait, so that wait does not pay for it. */
  warm(): void;
  close(): Promise<void>;
}

// After a lost connection, reconnect after this long, doubling up to the maximum.
const RECONNECT_MIN_MS = 50;
const RECONNECT_MAX_MS = 1_000;

/**
 * A poller for the replay tracker: one dedicated connection to the replica (not from the
 * pool, so polls never queue behind application queries), asking `pg_last_wal_replay_lsn()`
 * once per call. It is also the sentinel of the replica's process: it stays connected (and
 * reconnects after a loss, backing off), reports every loss, and on every connection reports
 * which process it reached (`pg_postmaster_start_time()`) — also when a poll finds it changed
 * on the same connection, as behind a connection pooler.
 *
 * @example
 * const poll = replayLsnPoller({ connectionString: replicaUrl }, { onConnect, onLost });
 * poll.warm();
 * const lsn = await poll(new AbortController().signal);
 */
export function replayLsnPoller(
  config: pg.ClientConfig,
  events: ReplicaConnectionEvents = { onConnect() {}, onLost() {} },
): ReplayLsnPoller {
  let client: pg.Client | null = null;
  let epoch: string | null = null;
  let connecting: Promise<pg.Client> | null = null;
  let closed = false;
  let reconnectTimer: NodeJS.Timeout | null = null;
  let backoff = RECONNECT_MIN_MS;

  const scheduleReconnect = () => {
    if (closed || reconnectTimer) return;
    reconnectTimer = setTimeout(() => {
      reconnectTimer = null;
      connect().then(
        () => {
          backoff = RECONNECT_MIN_MS;
        },
        () => {
          backoff = Math.min(backoff * 2, RECONNECT_MAX_MS);
          scheduleReconnect();
        },
      );
    }, backoff);
    reconnectTimer.unref();
  };

  const drop = (broken: pg.Client, error: unknown) => {
    broken.removeAllListeners('error');
    broken.on('error', () => {});
    void broken.end().catch(() => {});
    if (client !== broken) return;
    client = null;
    epoch = null;
    events.onLost(error);
    scheduleReconnect();
  };

  // Polls are Regional's housekeeping, not the app's queries: traced by no one (`untraced`).
  const connect = (): Promise<pg.Client> => {
    if (client) return Promise.resolve(client);
    if (closed) return Promise.reject(new Error('the replay poller is closed'));
    connecting ??= untraced(async () => {
      const fresh = new pg.Client({
        keepAlive: true,
        ...config,
        application_name: 'regional-replay-tracker',
      });
      // A connection that dies is dropped (and reported) at once, idle or not.
      fresh.on('error', (error) => drop(fresh, error));
      let started: string;
      try {
        await fresh.connect();
        const { rows } = await fresh.query<{ epoch: string }>(
          'SELECT pg_postmaster_start_time()::text AS epoch',
        );
        started = (rows[0] as { epoch: string }).epoch;
      } catch (error) {
        fresh.removeAllListeners('error');
        fresh.on('error', () => {});
        void fresh.end().catch(() => {});
        throw error;
      }
      if (closed) {
        void fresh.end().catch(() => {});
        throw new Error('the replay poller is closed');
      }
      client = fresh;
      epoch = started;
      events.onConnect(started);
      return fresh;
    }).finally(() => {
      connecting = null;
    });
    return connecting;
  };

  const pollOnce = async (signal: AbortSignal): Promise<bigint> => {
    const current = await connect();
    const onAbort = () => drop(current, new Error('a replay poll was aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      const { rows } = await current.query<{ lsn: string | null; epoch: string }>(POLL_QUERY);
      const row = rows[0] as { lsn: string | null; epoch: string };
      if (row.epoch !== epoch && client === current) {
        // Same connection, another process: a pooler in between kept it open across a restart.
        events.onLost(new Error('the replica restarted'));
        epoch = row.epoch;
        events.onConnect(row.epoch);
      }
      if (!row.lsn) {
        throw new Error(
          'pg_last_wal_replay_lsn() is NULL: the server at DATABASE_REPLICA_URL is not a replica (it is a primary)',
        );
      }
      return parseLsn(row.lsn);
    } catch (error) {
      drop(current, error);
      throw error;
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  };

  const poll = (signal: AbortSignal): Promise<bigint> => untraced(() => pollOnce(signal));

  return Object.assign(poll, {
    warm() {
      connect().catch(() => scheduleReconnect());
    },
    async close() {
      closed = true;
      if (reconnectTimer) clearTimeout(reconnectTimer);
      reconnectTimer = null;
      const current = client;
      client = null;
      if (current) {
        current.removeAllListeners('error');
        current.on('error', () => {});
        await current.end().catch(() => {});
      }
    },
  });
}
