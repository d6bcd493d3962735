import type pg from 'pg';
import { ConfigError, RegionalError } from '../core/errors.js';
import type { CommittedWrite } from './commit-lsn.js';

/**
 * How a replica-region pool's writes reach the primary:
 * - `direct` (default): over its own connection to the primary (`DATABASE_URL`), one round
 *   trip to the primary region per statement;
 * - `forward`: single write statements travel to an instance in the primary region, which
 *   runs them next to the primary and returns result and commit LSN (a forwarder, e.g. from
 *   `regional/rpc`, carries them). Read-write transactions need a connection held across
 *   statements, which forwarding has not: they are refused with a clear error (use a
 *   procedure). In the primary region both modes write directly.
 */
export type WriteMode = 'direct' | 'forward';

/** What carries forwarded writes: `regional/rpc`'s `Procedures` installs one on the pool. */
export interface WriteForwarder {
  /**
   * Runs one write (a text of `statements` statements) on the primary, outside any
   * transaction, and resolves with its result and commit LSN (`null` if it wrote nothing).
   */
  forward(
    config: pg.QueryConfig & { rowMode?: 'array' },
    statements: number,
  ): Promise<CommittedWrite>;
}

/** Reads the write mode from the `writes` option, else `REGIONAL_WRITES`. */
export function readWriteMode(
  given: WriteMode | undefined,
  env: Readonly<Record<string, string | undefined>> = process.env,
): WriteMode {
  const variable = given !== undefined ? 'writes' : 'REGIONAL_WRITES';
  const value = given ?? (env.REGIONAL_WRITES || 'direct');
  if (value !== 'direct' && value !== 'forward') {
    throw new ConfigError(
      variable,
      `must be "direct" (a connection to the primary) or "forward" (writes travel to a primary-region instance), got "${value}"`,
    );
  }
  return value;
}

/** A read-write transaction asked for where writes are forwarded. */
export function forwardedTransactionError(): RegionalError {
  return new RegionalError(
    'REGIONAL_TRANSACTION_NEEDS_PRIMARY',
    'A read-write transaction needs one connection to the primary held across its statements, but this pool forwards writes ' +
      '(writes: "forward" / REGIONAL_WRITES=forward) and holds none. Define the transaction as a procedure (regional/rpc), ' +
      'which runs it next to the primary in one round trip, or use writes: "direct".',
  );
}

/** A write in forward mode before anything was installed to carry it. */
export function missingForwarderError(): RegionalError {
  return new RegionalError(
    'REGIONAL_NO_FORWARDER',
    'This pool forwards writes (writes: "forward" / REGIONAL_WRITES=forward) but nothing carries them yet: ' +
      'create `new Procedures({ pool })` from regional/rpc at start-up, which installs itself as the forwarder.',
  );
}
