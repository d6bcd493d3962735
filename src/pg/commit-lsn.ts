import type pg from 'pg';
import { type Lsn, parseLsn } from '../core/lsn.js';
import { BEGIN, COMMIT, Pipeline, type Probe, runPipeline } from './pipeline.js';

/**
 * Capturing the commit LSN of a write in the same round trip as the write itself.
 *
 * After a synchronous COMMIT, `pg_current_wal_flush_lsn()` on the same connection is at or
 * after the end of that transaction's commit record. Asking for it inside the transaction
 * (or in an implicit multi-statement transaction) would return a position *before* the
 * commit, and a read waiting for that could still be stale: so the LSN is always read after
 * an explicit COMMIT, in the same pipeline.
 */

const LSN_QUERY = 'SELECT pg_current_wal_flush_lsn()::text AS lsn';
// Whether the transaction wrote anything (got a transaction id): if not, nothing needs to wait.
const XID_QUERY = 'SELECT pg_current_xact_id_if_assigned()::text AS xid';

/** The result of a write and where it committed. */
export interface CommittedWrite {
  result: pg.QueryResult | pg.QueryResult[];
  /** The commit LSN; `null` when the statement wrote nothing (no transaction id was assigned). */
  lsn: Lsn | null;
  /**
   * The primary's WAL flush position just after the commit, whether the statement wrote or
   * not: at or after every commit it could see (a read served by the primary records it, so
   * later reads on a replica see no less). Absent where the carrier does not report it.
   */
  flushed?: Lsn | null;
}

const XID: Probe = { text: XID_QUERY, returnsRow: true };
const FLUSH_LSN: Probe = { text: LSN_QUERY, returnsRow: true };

/**
 * One parameterised write as a single pipeline before one Sync: `BEGIN`, the statement,
 * the transaction-id check, `COMMIT`, and `pg_current_wal_flush_lsn()`, read back from one
 * round trip. When the statement fails the connection is left inside the aborted
 * transaction: {@link needsRollback} tells the caller to roll it back before reusing it.
 */
class PipelinedWrite extends Pipeline {
  constructor(config: pg.QueryConfig & { rowMode?: 'array' }) {
    super(config, [BEGIN], [XID, COMMIT, FLUSH_LSN]);
  }

  /** True if the connection is left in an aborted transaction that must be rolled back. */
  get needsRollback(): boolean {
    return this.failedBefore(COMMIT);
  }
}

/** A connection-level failure (the server or network went away), as opposed to an SQL error. */
export function isConnectionFailure(error: unknown): boolean {
  const e = error as { code?: string; message?: string } | undefined;
  if (!e) return false;
  if (e.code && /^(08|57P0[123])/.test(e.code)) return true;
  if (
    e.code &&
    ['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND'].includes(
      e.code,
    )
  ) {
    return true;
  }
  return (
    e.code === undefined &&
    /Connection terminated|connection timeout|Client has encountered a connection error|not queryable|ECONNREFUSED|timeout exceeded when trying to connect|Query read timeout/i.test(
      e.message ?? '',
    )
  );
}

/** The flush LSN as a separate query, for the rare writes that cannot be pipelined. */
async function flushLsn(client: pg.PoolClient): Promise<Lsn> {
  const { rows } = await client.query<{ lsn: string }>(LSN_QUERY);
  return parseLsn((rows[0] as { lsn: string }).lsn);
}

const NOT_IN_TRANSACTION_BLOCK = '25001';

/**
 * Runs a write outside any transaction on `client` (a primary connection) and returns its
 * result and commit LSN, in one round trip. A single statement is pipelined (see
 * {@link PipelinedWrite}); several statements in one text go as one simple query
 * `BEGIN; …; COMMIT; SELECT pg_current_wal_flush_lsn()`. Statements that refuse to run inside
 * a transaction block (`VACUUM`, `CREATE INDEX CONCURRENTLY`, …) are run alone and followed by
 * a separate LSN query.
 */
export async function writeWithCommitLsn(
  client: pg.PoolClient,
  config: pg.QueryConfig & { rowMode?: 'array' },
  statements: number,
): Promise<CommittedWrite> {
  if (statements <= 1) {
    const write = new PipelinedWrite(config);
    try {
      const { result, probes } = await runPipeline(client, write);
      // Probes: BEGIN, XID, COMMIT, LSN.
      const [, xid, , lsn] = probes;
      const flushed = lsn ? parseLsn(lsn) : null;
      return { result, lsn: xid ? flushed : null, flushed };
    } catch (error) {
      // Not on a broken connection: the ROLLBACK would fail and hide the real cause.
      if (write.needsRollback && !isConnectionFailure(error)) await client.query('ROLLBACK');
      if ((error as { code?: string }).code !== NOT_IN_TRANSACTION_BLOCK) throw error;
      const result = await client.query(config);
      const flushed = await flushLsn(client);
      return { result, lsn: flushed, flushed };
    }
  }
  const wrapped = `BEGIN;\n${config.text}\n;COMMIT;${LSN_QUERY}`;
  let results: pg.QueryResult[];
  try {
    results = (await client.query({ ...config, text: wrapped })) as unknown as pg.QueryResult[];
  } catch (error) {
    if (client.getTransactionStatus?.() !== 'I' && !isConnectionFailure(error))
      await client.query('ROLLBACK');
    if ((error as { code?: string }).code !== NOT_IN_TRANSACTION_BLOCK) throw error;
    const result = await client.query(config);
    const flushed = await flushLsn(client);
    return { result, lsn: flushed, flushed };
  }
  const own = results.slice(1, -2);
  // With `rowMode: 'array'` every result of the text comes as arrays, the LSN's too.
  const lsnRow = results[results.length - 1]?.rows[0] as { lsn: string } | [string] | undefined;
  const lsnText = Array.isArray(lsnRow) ? lsnRow[0] : lsnRow?.lsn;
  const flushed = lsnText ? parseLsn(lsnText) : null;
  return { result: own.length === 1 ? (own[0] as pg.QueryResult) : own, lsn: flushed, flushed };
}

/**
 * Commits the transaction open on `client` and returns, from the same round trip, the commit
 * LSN (`null` if the transaction wrote nothing) and the flush position after the commit (what
 * its reads could have seen: see {@link CommittedWrite.flushed}). A transaction already aborted
 * by an error is simply ended (Postgres answers ROLLBACK) and the error is left to the caller.
 */
export async function commitWithLsn(
  client: pg.PoolClient,
): Promise<{ result: pg.QueryResult; lsn: Lsn | null; flushed: Lsn | null }> {
  if (client.getTransactionStatus?.() === 'E') {
    return { result: await client.query('COMMIT'), lsn: null, flushed: null };
  }
  const results = (await client.query(
    `${XID_QUERY};COMMIT;${LSN_QUERY}`,
  )) as unknown as pg.QueryResult[];
  const xid = (results[0]?.rows[0] as { xid: string | null } | undefined)?.xid ?? null;
  const lsn = (results[2]?.rows[0] as { lsn: string } | undefined)?.lsn;
  const flushed = lsn ? parseLsn(lsn) : null;
  return { result: results[1] as pg.QueryResult, lsn: xid === null ? null : flushed, flushed };
}
