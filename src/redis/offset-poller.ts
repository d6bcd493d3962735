import type { Redis } from 'ioredis';
import { type ConnectionSettings, connect, ready } from './connection.js';
import { parseReplicationInfo, type ReplicationInfo } from './replication-info.js';

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
 *
 * @example
 * const poll = redisOffsetPoller(process.env.REDIS_REPLICA_URL);
 * const { replid, offset } = await poll(new AbortController().signal);
 */
export function redisOffsetPoller(url: string, settings?: ConnectionSettings): OffsetPoller {
  let client: Redis | null = null;
  let inFlight: Promise<ReplicationInfo> | null = null;

  const open = (): Redis => {
    client ??= connect(url, {
      commandTimeoutMs: 2_000,
      connectTimeoutMs: 2_000,
      settings: { ...settings, connectionName: 'regional-offset-poller' },
      // Failures reach the waiters through the polls; the event itself needs no handling.
      onError: () => {},
    });
    return client;
  };

  const drop = (broken: Redis) => {
    if (client === broken) client = null;
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
