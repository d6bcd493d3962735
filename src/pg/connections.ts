import type pg from 'pg';
import { PrimaryUnavailableError, QueryTimeoutError } from '../core/errors.js';
import { isConnectionFailure } from './commit-lsn.js';

/** What broke each connection, as its `'error'` event said. */
const causes = new WeakMap<object, Error>();

/**
 * Gives every connection `pool` opens an `'error'` listener for its whole life. pg-pool listens
 * only while a connection is idle; one that breaks while checked out (a server killed under a
 * read, a write, a transaction) would otherwise emit an event nobody hears, and node exits.
 * The listener keeps the first cause, so the query that next fails on the dead connection
 * (node-postgres says only "not queryable") can report what really happened.
 *
 * @example
 * guardConnections(pool, (error) => replicaRoute.failed(error));
 */
export function guardConnections(pool: pg.Pool, onError: (error: Error) => void): void {
  pool.on('connect', (client) => {
    client.on('error', (error: Error) => {
      if (!causes.has(client)) causes.set(client, error);
      onError(error);
    });
  });
}

/** True for an error raised before the statement left this process: nothing was sent. */
export function unsent(error: unknown): boolean {
  const message = (error as Error | undefined)?.message ?? '';
  const code = (error as { code?: string } | undefined)?.code;
  return (
    /not queryable|timeout exceeded when trying to connect|due to connection timeout/i.test(
      message,
    ) || code === 'ECONNREFUSED'
  );
}

/**
 * `error` as a Regional error when it says the primary is unreachable, the connection broke,
 * or no answer came in time (`QueryTimeoutError`); any other error (an SQL error) unchanged.
 * `client` is the connection it happened on, whose recorded cause replaces node-postgres's
 * "not queryable".
 */
export function primaryError(
  error: unknown,
  operation: 'read' | 'write',
  options: { client?: pg.ClientBase; sent?: boolean; queryTimeoutMs: number },
): unknown {
  if (!isConnectionFailure(error)) return error;
  if (/Query read timeout/.test((error as Error).message))
    return new QueryTimeoutError('primary', options.queryTimeoutMs, { cause: error });
  const cause = (options.client && causes.get(options.client)) ?? error;
  return new PrimaryUnavailableError(operation, options.sent ?? !unsent(error), { cause });
}
