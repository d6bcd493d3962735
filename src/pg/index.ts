/**
 * `regional/pg`: a drop-in for node-postgres's `Pool` that reads from this region's replica,
 * writes to the primary, and makes every read see the writes before it.
 *
 * @example
 * import { RegionalPool } from 'regional/pg';
 * const pool = new RegionalPool();
 */

export type { StatementInfo, StatementKind, TransactionControl } from '../core/classify.js';
export { classifySql, inspectSql } from '../core/classify.js';
export { RegionalClient } from './client.js';
export type { CommittedWrite } from './commit-lsn.js';
export { commitWithLsn, writeWithCommitLsn } from './commit-lsn.js';
export type { WriteForwarder, WriteMode } from './forwarding.js';
export type { RegionalPoolOptions, RegionalPoolStats } from './pool.js';
export { RegionalPool } from './pool.js';
export { replayLsnPoller } from './replay-poller.js';
export type { QueryInput, QueryOptions, Target } from './statement.js';
export type { TransactionClient, TransactionOptions } from './transaction.js';
