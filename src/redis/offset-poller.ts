import type { Redis } from 'ioredis';
import { type ConnectionSettings, connect, ready } from './connection.js';
import { parseReplicationInfo, type ReplicationInfo } from './replication-info.js';

/** What the poller tells about its connection to the replica (see `ReplicaRoute`). */
export interface ReplicaConnectionEvents {
  /** Connected (again) to the replica process `runId` (`INFO server`'s `run_id`). */
  onConnect(runId: string): void;
  /** The connection closed: the replica may be restarting. */
  onLost(error: unknown): void;
}

/** Asks a Redis replica where it is: its history and processed offset, one `INFO replication` per call. */
export interface OffsetPoller {
  (signal: AbortSignal): Promise<ReplicationInfo>;
  /** Opens the connection ahead of the first wait. */
  warm(): void;
  close(): void;
}

/**
 * The poller behind a Redis replica's replay tracker: one dedicated connection (polls never
 * queue behind application commands), asking `INFO replication` — not `ROLE`, whose offset
 * does not say which history it belongs to: after the primary restarts without its replication
 * state, a replica not yet resynchronised reports an offset of the old history that can be far
 * above the new one's. Concurrent calls share one query. An aborted poll drops the connection.
 * It is also the sentinel of the replica's process: it reconnects on its own, reports every
 * loss, and on every connection which process it reached (`run_id`): a restarted replica
 * reloads an older snapshot and resynchronises, so it can be behind what it showed before.
 *
 * @example
 * const poll = redisOffsetPoller(process.env.REDIS_REPLICA_URL);
 * const { replid, offset } = await poll(new AbortController().signal);
 */
export function redisOffsetPoller(
  url: string,
  settings?: ConnectionSettings,
  events: ReplicaConnectionEvents = { onConnect() {}, onLost() {} },
): OffsetPoller {
  let client: Redis | null = null;
  let inFlight: Promise<ReplicationInfo> | null = null;

  const open = (): Redis => {
    if (client) return client;
    const fresh = connect(url, {
      commandTimeoutMs: 2_000,
      connectTimeoutMs: 2_000,
      settings: { ...settings, connectionName: 'regional-offset-poller' },
      // Failures reach the waiters through the polls; the event itself needs no handling.
      onError: () => {},
    });
    fresh.on('ready', () => {
      fresh.info('server').then(
        (info) => {
          const runId = /^run_id:(\S+)/m.exec(info)?.[1];
          if (client === fresh && runId) events.onConnect(runId);
        },
        (error: unknown) => events.onLost(error),
      );
    });
    fresh.on('close', () => {
      if (client === fresh) events.onLost(new Error('the connection closed'));
    });
    client = fresh;
    return fresh;
  };

  const drop = (broken: Redis) => {
    if (client === broken) {
      client = null;
      events.onLost(new Error('a poll was aborted'));
    }
    broken.disconnect();
  };

  const poll = (signal: AbortSignal): Promise<ReplicationInfo> => {
    inFlight ??= (async () => {
      const current = open();
      const onAbort = () => drop(current);
      signal.addEventListener('abort', onAbort, { once: true });
      try {
        await ready(current);
        return parseReplicationInfo(await current.info('replication'));
      } finally {
        signal.removeEventListener('abort', onAbort);
      }
    })().finally(() => {
      inFlight = null;
    });
    return inFlight;
  };

  return Object.assign(poll, {
    warm() {
      ready(open()).catch(() => {});
    },
    close() {
      if (client) drop(client);
    },
  });
}
