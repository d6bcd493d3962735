import { RegionalError, statusForCode } from '../core/errors.js';
import { READ_ONLY_SQL_TRANSACTION } from '../core/route.js';

/**
 * A request that was taken for a read (a GET, or a route in `readRoutes`) tried to write in a
 * replica region. Thrown by the pool just before the write would be sent, so nothing was
 * written. With code `REGIONAL_WRITE_IN_READ` the request is being replayed in the primary
 * region (let the error propagate; whatever the handler answers is discarded). With code
 * `REGIONAL_WRITE_IN_READ_FAILED` it cannot be: part of the response was already sent, or
 * (in `proxy` mode) its body was already read.
 */
export class WriteInReadError extends RegionalError {
  constructor(
    readonly replayed: boolean,
    message: string,
  ) {
    super(replayed ? 'REGIONAL_WRITE_IN_READ' : 'REGIONAL_WRITE_IN_READ_FAILED', message);
    this.name = 'WriteInReadError';
  }
}

/**
 * A read request's token names a write the local replica had still not replayed when the
 * handler's first read had waited `maxWaitMs` for it (lag policy `replay`). Thrown by that
 * read, so nothing stale is read; the request is replayed in the primary region and whatever
 * the handler answers here is discarded.
 */
export class LagReplayError extends RegionalError {
  constructor(message: string) {
    super('REGIONAL_LAG_REPLAY', message);
    this.name = 'LagReplayError';
  }
}

/** True for an error whose `code` (or whose cause's) is SQLSTATE 25006. */
export function isReadOnlyError(error: unknown): boolean {
  for (let e = error, depth = 0; e && depth < 4; depth++) {
    if ((e as { code?: unknown }).code === READ_ONLY_SQL_TRANSACTION) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

/** What a client is told when one of Regional's errors a client can act on ends its request. */
export interface ClientError {
  status: number;
  code: string;
  message: string;
}

// Messages for clients: what happened and what to do, never hosts, addresses or causes.
const CLIENT_MESSAGES: Readonly<Record<string, string>> = {
  REGIONAL_PRIMARY_UNAVAILABLE: 'The database is unreachable right now. Retry shortly.',
  REGIONAL_REPLICA_UNAVAILABLE: "This region's database replica is unavailable. Retry shortly.",
  REGIONAL_REPLICATION_TIMEOUT:
    "This region has not caught up with this client's latest change yet. Retry shortly.",
  REGIONAL_INSTANCES_UNREACHABLE:
    'The primary region did not answer; whether the change was applied there is unknown. Retry shortly.',
  REGIONAL_REDIS_PRIMARY_UNAVAILABLE: 'The shared store is unreachable right now. Retry shortly.',
  REGIONAL_QUERY_TIMEOUT:
    'The database did not answer in time; a change may or may not have been applied. Retry shortly.',
  REGIONAL_REPLAY_TIMEOUT: 'The primary region did not answer in time. Retry shortly.',
};

/**
 * The status, code and client-facing message for `error` if it is a Regional error a client can
 * act on by retrying (one with an HTTP `status`: 503 or 504), else `null`.
 *
 * @example
 * const answer = clientError(error); // { status: 503, code: 'REGIONAL_PRIMARY_UNAVAILABLE', message: '…' }
 */
export function clientError(error: unknown): ClientError | null {
  const found = retryableIn(error);
  if (!found) return null;
  const { code, status, source } = found;
  let message = CLIENT_MESSAGES[code] ?? 'Temporarily unavailable. Retry shortly.';
  const { operation, sent } = source as { operation?: string; sent?: boolean };
  if (code === 'REGIONAL_PRIMARY_UNAVAILABLE' && operation === 'write' && sent !== undefined) {
    message = sent
      ? 'The database did not confirm the change; it may or may not have been applied. Retry shortly.'
      : 'The database is unreachable right now; nothing was changed. Retry shortly.';
  }
  return { status, code, message };
}

/**
 * The retryable Regional error in `error`, or in its causes: ORMs wrap the driver's errors
 * (Drizzle keeps it as the `cause`; Prisma makes its own error with the same `code`).
 */
function retryableIn(error: unknown): { code: string; status: number; source: object } | null {
  for (let e = error, depth = 0; typeof e === 'object' && e !== null && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') {
      const status = e instanceof RegionalError ? e.status : statusForCode(code);
      if (status !== undefined) return { code, status, source: e };
    }
    e = (e as { cause?: unknown }).cause;
  }
  return null;
}
