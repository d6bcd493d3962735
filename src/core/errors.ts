/**
 * Regional's own errors. Each has a stable `code` so callers (and the HTTP layer) can react
 * without matching messages.
 */
export class RegionalError extends Error {
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'RegionalError';
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
