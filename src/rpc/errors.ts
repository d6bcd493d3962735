import { RegionalError } from '../core/errors.js';
import type { WireError } from './protocol.js';

/**
 * A procedure (or forwarded statement) failed on the instance that ran it; its transaction
 * was rolled back. `code` is the original error's: the Postgres SQLSTATE (`23505` for a
 * unique violation, …) or a Regional code, so the caller can react as if it had run locally.
 *
 * @example
 * try {
 *   await createPost(input);
 * } catch (error) {
 *   if (error instanceof ProcedureError && error.code === '23505') return conflict();
 *   throw error;
 * }
 */
export class ProcedureError extends RegionalError {
  /** The name of the error where it was thrown (`DatabaseError`, `TypeError`, …). */
  readonly remoteName: string;
  /** Postgres's `detail`, if any. */
  readonly detail: string | undefined;
  /** The constraint a Postgres error names, if any. */
  readonly constraint: string | undefined;
  /** The stack where it was thrown: only when the answering instance has `debug` on. */
  readonly remoteStack: string | undefined;

  constructor(
    readonly procedure: string,
    readonly region: string,
    wire: WireError,
  ) {
    super(wire.code ?? 'REGIONAL_PROCEDURE_FAILED', wire.message);
    this.name = 'ProcedureError';
    this.remoteName = wire.name;
    this.detail = wire.detail;
    this.constraint = wire.constraint;
    this.remoteStack = wire.stack;
  }
}

/** No procedure of that name is registered where the call was sent (or here, for a local call). */
export class ProcedureNotFoundError extends RegionalError {
  constructor(
    readonly procedure: string,
    where: string,
  ) {
    super(
      'REGIONAL_PROCEDURE_NOT_FOUND',
      `No procedure "${procedure}" is registered ${where}. Define it with procedures.define("${procedure}", fn) on every instance; ` +
        'during a deploy, an instance still running the previous version does not know procedures added since.',
    );
    this.name = 'ProcedureNotFoundError';
  }
}

/**
 * No instance of the target region answered (every attempt failed to connect or timed out),
 * and no fallback applied. Whether the call ran there is unknown; calling again with the same
 * `callId` is safe: it runs at most once and returns the recorded result if it did.
 */
export class InstancesUnreachableError extends RegionalError {
  constructor(
    readonly region: string,
    readonly callId: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super('REGIONAL_INSTANCES_UNREACHABLE', message, options);
    this.name = 'InstancesUnreachableError';
  }
}

/**
 * The instance refused the call: a bad signature (401), too large (413), expired (410), …
 * `remoteStatus` is what it answered; the error itself has no HTTP `status` of its own: a
 * refusal is a configuration to fix, not something a client of this app can retry.
 */
export class CallRefusedError extends RegionalError {
  constructor(
    readonly remoteStatus: number,
    code: string,
    message: string,
  ) {
    super(code, message);
    this.name = 'CallRefusedError';
  }
}

/** Caller and callee speak no common protocol version (during a deploy across an incompatible change). */
export class ProtocolVersionError extends RegionalError {
  constructor(message: string) {
    super('REGIONAL_PROTOCOL_VERSION', message);
    this.name = 'ProtocolVersionError';
  }
}
