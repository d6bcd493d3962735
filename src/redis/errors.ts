import { RegionalError } from '../core/errors.js';

/**
 * The primary Redis could not be reached. For a write, `sent` tells whether the command left
 * this process: if not, it was not applied; if it did (the connection broke, or no answer came
 * in time), it may or may not have been — Regional never resends it on its own.
 */
export class RedisPrimaryUnavailableError extends RegionalError {
  constructor(
    readonly where: string,
    readonly operation: 'read' | 'write',
    readonly sent: boolean,
    options?: { cause?: unknown },
  ) {
    const cause = (options?.cause as Error | undefined)?.message ?? String(options?.cause ?? '');
    super(
      'REGIONAL_REDIS_PRIMARY_UNAVAILABLE',
      operation === 'read'
        ? `The primary Redis (${where}) could not serve a read (${cause}).`
        : sent
          ? `The primary Redis (${where}) did not answer a write (${cause}); it may or may not have been applied, and is not retried.`
          : `The primary Redis (${where}) is unreachable (${cause}); the write was not sent.`,
      options,
    );
    this.name = 'RedisPrimaryUnavailableError';
  }
}

/** A command the shared store does not route (it would block or take over a shared connection). */
export class RedisUnsupportedCommandError extends RegionalError {
  constructor(
    readonly command: string,
    advice: string,
  ) {
    super('REGIONAL_REDIS_UNSUPPORTED_COMMAND', `${command.toUpperCase()}: ${advice}`);
    this.name = 'RedisUnsupportedCommandError';
  }
}

/** A purge removed the entry here but could not be sent to the other regions. */
export class CachePurgeError extends RegionalError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('REGIONAL_CACHE_PURGE_FAILED', message, options);
    this.name = 'CachePurgeError';
  }
}
