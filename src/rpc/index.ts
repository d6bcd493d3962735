/**
 * `regional/rpc`: procedures — write logic that runs in the primary region, next to the
 * primary, in one transaction, exactly once, returning its result and commit LSN — and
 * statement forwarding for `RegionalPool` (`writes: 'forward'`).
 *
 * @example
 * import { RegionalPool } from 'regional/pg';
 * import { Procedures } from 'regional/rpc';
 *
 * const pool = new RegionalPool();
 * const procedures = new Procedures({ pool }); // REGIONAL_SECRET, REGIONAL_PRIMARY_URL
 * export const like = procedures.define('like', async (tx, input: { postId: number }) => {
 *   await tx.query('UPDATE posts SET likes = likes + 1 WHERE id = $1', [input.postId]);
 * });
 */

export { decodeValue, encodeValue, UnserializableValueError } from './codec.js';
export type { ProceduresSettings } from './config.js';
export {
  CallRefusedError,
  InstancesUnreachableError,
  ProcedureError,
  ProcedureNotFoundError,
  ProtocolVersionError,
} from './errors.js';
export type {
  CallOptions,
  CallOutcome,
  DefineOptions,
  Procedure,
  ProcedureCall,
  ProcedureFn,
  ProceduresOptions,
  ProceduresStats,
} from './procedures.js';
export { Procedures } from './procedures.js';
export type { VersionRange } from './protocol.js';
export { MIN_PROTOCOL_VERSION, PROTOCOL_VERSION } from './protocol.js';
