/**
 * The HTTP status that fits an error a client can act on by retrying: 503 when something is
 * unavailable for now, 504 when an answer did not come in time. Keyed by code, so an error that
 * travelled from another region (a procedure's) gets the same status as the original.
 */
const STATUS_BY_CODE: Readonly<Record<string, number>> = {
  REGIONAL_PRIMARY_UNAVAILABLE: 503,
  REGIONAL_REPLICA_UNAVAILABLE: 503,
  REGIONAL_REPLICATION_TIMEOUT: 503,
  REGIONAL_INSTANCES_UNREACHABLE: 503,
  REGIONAL_REDIS_PRIMARY_UNAVAILABLE: 503,
  REGIONAL_QUERY_TIMEOUT: 504,
  REGIONAL_REPLAY_TIMEOUT: 504,
};

/** The HTTP status of a Regional error code (see {@link RegionalError.status}), if it has one. */
export function statusForCode(code: string): number | undefined {
  return STATUS_BY_CODE[code];
}

/**
 * Regional's own errors. Each has a stable `code` so callers (and the HTTP layer) can react
 * without matching messages. Messages are for logs: they may name hosts and causes, so the HTTP
 * adapters answer clients with a message of their own.
 */
export class RegionalError extends Error {
  /**
   * The HTTP status a server should answer with when this error ends a request: 503 or 504 for
   * failures worth retrying, `undefined` for the rest (a bug or a configuration to fix, where
   * the app's own error handling decides). Express's and Fastify's default error handlers read it.
   */
  readonly status: number | undefined;

  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'RegionalError';
    this.status = STATUS_BY_CODE[code];
  }
}

/** A configuration value is missing or wrong; `variable` names the option or variable at fault. */
export class ConfigError extends RegionalError {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super('REGIONAL_CONFIG', `${variable}: ${message}`);
    this.name = 'ConfigError';
  }
}

/**
 * A read waited for the local replica longer than the configured bound and the policy is
 * `error`. `lsn` is what it waited for, `replayed` what the replica had reached.
 */
export class ReplicationTimeoutError extends RegionalError {
  constructor(
    readonly waitedMs: number,
    readonly target: string,
    readonly reached: string | null,
    options?: { cause?: unknown },
  ) {
    super(
      'REGIONAL_REPLICATION_TIMEOUT',
      `The local replica did not replay position ${target} within ${waitedMs} ms (it had reached ${reached ?? 'an unknown position'}). ` +
        'Raise REGIONAL_MAX_WAIT_MS, or set REGIONAL_WAIT_POLICY=primary to read from the primary instead.',
      options,
    );
    this.name = 'ReplicationTimeoutError';
  }
}

/** The replica could not be asked for its replay position. */
export class ReplicaUnavailableError extends RegionalError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('REGIONAL_REPLICA_UNAVAILABLE', message, options);
    this.name = 'ReplicaUnavailableError';
  }
}

/**
 * The primary database could not be reached, or the connection to it broke. For a write,
 * `sent` tells whether the statement left this process: if not, nothing was written; if it did
 * (the connection broke while waiting for the answer), it may or may not have been committed,
 * and Regional never sends it again on its own.
 */
export class PrimaryUnavailableError extends RegionalError {
  constructor(
    readonly operation: 'read' | 'write',
    readonly sent: boolean,
    options: { cause: unknown },
  ) {
    const cause = (options.cause as Error | undefined)?.message ?? String(options.cause);
    super(
      'REGIONAL_PRIMARY_UNAVAILABLE',
      operation === 'read'
        ? `The primary database could not serve a read (${cause}).`
        : sent
          ? `The connection to the primary database broke before it answered a write (${cause}); the write may or may not have been committed, and is not sent again.`
          : `The primary database is unreachable (${cause}); the write was not sent.`,
      options,
    );
    this.name = 'PrimaryUnavailableError';
  }
}

/**
 * A query had no answer within `REGIONAL_QUERY_TIMEOUT_MS` (a server that hangs, a network cut
 * that drops packets): its connection was closed. For a write, what it did is unknown.
 */
export class QueryTimeoutError extends RegionalError {
  constructor(
    readonly target: 'primary' | 'replica',
    readonly timeoutMs: number,
    options?: { cause?: unknown },
  ) {
    super(
      'REGIONAL_QUERY_TIMEOUT',
      `The ${target} did not answer a query within ${timeoutMs} ms (REGIONAL_QUERY_TIMEOUT_MS); its connection was closed. A write may or may not have been committed.`,
      options,
    );
    this.name = 'QueryTimeoutError';
  }
}
