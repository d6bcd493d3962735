import { RegionalError } from '../core/errors.js';

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

/** SQLSTATE 25006, read_only_sql_transaction: a replica refused a write. */
export const READ_ONLY_SQL_TRANSACTION = '25006';

/** True for an error whose `code` (or whose cause's) is SQLSTATE 25006. */
export function isReadOnlyError(error: unknown): boolean {
  for (let e = error, depth = 0; e && depth < 4; depth++) {
    if ((e as { code?: unknown }).code === READ_ONLY_SQL_TRANSACTION) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}
