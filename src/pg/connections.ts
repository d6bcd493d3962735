import pg from 'pg';
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

/**
 * A pg.Client that gives up connecting after `ms` unless told otherwise. Set on the pool's
 * `connectionTimeoutMillis` instead, pg-pool would also arm a timer on every checkout of an
 * idle connection, which costs more than Regional's routing on the read path.
 */
function clientWithConnectTimeout(ms: number): typeof pg.Client {
  return class extends pg.Client {
    constructor(config?: string | pg.ClientConfig) {
      const options = typeof config === 'string' ? { connectionString: config } : (config ?? {});
      super({ connectionTimeoutMillis: ms, ...options });
    }
  };
}

/**
 * A node-postgres pool on `url`, every connection of it guarded (see {@link guardConnections}):
 * connecting gives up after `connectMs` unless `options` say otherwise.
 */
export function guardedPool(
  url: string,
  connectMs: number,
  options: Omit<pg.PoolConfig, 'connectionString'>,
  onError: (error: Error) => void,
): pg.Pool {
  const pool = new pg.Pool({
    Client: clientWithConnectTimeout(connectMs),
    ...options,
    connectionString: url,
  });
  guardConnections(pool, onError);
  return pool;
}

/**
 * Asks for the cluster's system identifier on a connection of its own, made as `pool` makes
 * its connections. Not on one of the pool's: the caller may be a transaction recording its
 * commit, and every connection of the pool may be held by such callers, all waiting for this.
 */
export async function systemIdentifier(pool: pg.Pool): Promise<string> {
  const Client = (pool.options.Client ?? pg.Client) as typeof pg.Client;
  const client = new Client(pool.options);
  // A connection that fails mid-query rejects the query; the event would only crash the process.
  client.on('error', () => {});
  await client.connect();
  try {
    const { rows } = await client.query<{ id: string }>(
      'SELECT system_identifier::text AS id FROM pg_control_system()',
    );
    return (rows[0] as { id: string }).id;
  } finally {
    // The answer (or the query's error) is in hand; failing to close a one-off connection
    // changes neither, and the server drops it when the socket goes.
    await client.end().catch(() => {});
  }
}
