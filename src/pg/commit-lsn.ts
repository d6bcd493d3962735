import pg from 'pg';
import pgUtils from 'pg/lib/utils.js';
import { type Lsn, parseLsn } from '../core/lsn.js';

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
}

/** The subset of pg's wire connection that a submittable query uses. */
interface WireConnection {
  stream: { cork?: () => void; uncork?: () => void };
  parse(message: { text: string }): void;
  bind(message: { values: unknown[]; binary?: boolean }): void;
  describe(message: { type: 'P'; name: string }): void;
  execute(message: { portal: string }): void;
  sync(): void;
  sendCopyFail(message: string): void;
}

interface WireField {
  name: string;
  dataTypeID: number;
  format?: string;
}

/** What the error says about the connection's state, for the caller's clean-up. */
export class PipelinedWriteError extends Error {
  override name = 'PipelinedWriteError';
}

enum Step {
  Begin = 0,
  Statement = 1,
  Xid = 2,
  Commit = 3,
  Lsn = 4,
}

/**
 * One parameterised write as a single pipeline before one Sync: `BEGIN`, the statement,
 * the transaction-id check, `COMMIT`, and `pg_current_wal_flush_lsn()`. node-postgres accepts
 * any object with `submit(connection)` as a query (as pg-cursor does); this one writes all
 * the messages at once and reads the five results back from one round trip.
 *
 * When the statement fails the connection is left inside the aborted transaction:
 * {@link needsRollback} tells the caller to roll it back before reusing the connection.
 */
export class PipelinedWrite {
  readonly text: string;
  private readonly values: unknown[];
  private readonly binary: boolean;
  /** Called once with the outcome; node-postgres wraps it for `query_timeout`. */
  callback:
    | ((
        error: Error | null,
        outcome?: { result: pg.QueryResult; xid: string | null; lsn: string | null },
      ) => void)
    | undefined;
  /** The statement's own result; node-postgres gives it the client's type parsers. */
  readonly _result: pg.Result & { _types?: unknown };
  private step: Step = Step.Begin;
  private xid: string | null = null;
  private lsn: string | null = null;
  /** The step that failed, if one did. */
  failedStep: number | null = null;

  constructor(config: pg.QueryConfig & { rowMode?: 'array'; binary?: boolean }) {
    this.text = config.text;
    this.values = config.values ?? [];
    this.binary = config.binary === true;
    const Result = (
      pg as unknown as { Result: new (rowMode?: string, types?: unknown) => pg.Result }
    ).Result;
    this._result = new Result(
      config.rowMode,
      (config as { types?: unknown }).types,
    ) as pg.Result & { _types?: unknown };
  }

  /** True if the connection is left in an aborted transaction that must be rolled back. */
  get needsRollback(): boolean {
    return this.failedStep !== null && this.failedStep < Step.Commit;
  }

  submit(connection: WireConnection): Error | null {
    let values: unknown[];
    try {
      // Serialise first, so a value that cannot be sent fails before anything is written.
      values = this.values.map((value) => pgUtils.prepareValue(value));
    } catch (error) {
      this.failedStep = Step.Begin;
      return error as Error;
    }
    connection.stream.cork?.();
    try {
      const plain = (text: string, describe: boolean) => {
        connection.parse({ text });
        connection.bind({ values: [] });
        if (describe) connection.describe({ type: 'P', name: '' });
        connection.execute({ portal: '' });
      };
      plain('BEGIN', false);
      connection.parse({ text: this.text });
      connection.bind({ values, binary: this.binary });
      connection.describe({ type: 'P', name: '' });
      connection.execute({ portal: '' });
      plain(XID_QUERY, true);
      plain('COMMIT', false);
      plain(LSN_QUERY, true);
      connection.sync();
    } finally {
      connection.stream.uncork?.();
    }
    return null;
  }

  handleRowDescription(message: { fields: WireField[] }): void {
    if (this.step === Step.Statement)
      (this._result as unknown as { addFields(f: WireField[]): void }).addFields(message.fields);
  }

  handleDataRow(message: { fields: (string | null)[] }): void {
    switch (this.step) {
      case Step.Statement: {
        const result = this._result as unknown as {
          parseRow(f: unknown[]): unknown;
          addRow(r: unknown): void;
        };
        result.addRow(result.parseRow(message.fields));
        return;
      }
      case Step.Xid:
        this.xid = message.fields[0] ?? null;
        return;
      case Step.Lsn:
        this.lsn = message.fields[0] ?? null;
        return;
    }
  }

  handleCommandComplete(message: { text?: string; command?: string }): void {
    if (this.step === Step.Statement) {
      (this._result as unknown as { addCommandComplete(m: unknown): void }).addCommandComplete(
        message,
      );
    }
    this.step++;
  }

  handleEmptyQuery(): void {
    this.step++;
  }

  handleError(error: Error): void {
    this.failedStep = this.step;
    this.callback?.(error);
    this.callback = undefined;
  }

  handleReadyForQuery(): void {
    this.callback?.(null, { result: this._result as pg.QueryResult, xid: this.xid, lsn: this.lsn });
    this.callback = undefined;
  }

  handlePortalSuspended(): void {}

  handleCopyInResponse(connection: WireConnection): void {
    connection.sendCopyFail(
      'COPY FROM STDIN is not supported through RegionalPool.query; use a client from connect()',
    );
  }

  handleCopyData(): void {}
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
    /Connection terminated|connection timeout|Client has encountered a connection error|not queryable|ECONNREFUSED|timeout exceeded when trying to connect/i.test(
      e.message ?? '',
    )
  );
}

function runPipelined(
  client: pg.PoolClient,
  write: PipelinedWrite,
): Promise<{ result: pg.QueryResult; xid: string | null; lsn: string | null }> {
  return new Promise((resolve, reject) => {
    write.callback = (error, outcome) => (error ? reject(error) : resolve(outcome as never));
    (client as unknown as { query(q: PipelinedWrite): void }).query(write);
  });
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
      const { result, xid, lsn } = await runPipelined(client, write);
      return { result, lsn: xid === null || lsn === null ? null : parseLsn(lsn) };
    } catch (error) {
      if (write.needsRollback) await client.query('ROLLBACK');
      if ((error as { code?: string }).code !== NOT_IN_TRANSACTION_BLOCK) throw error;
      const result = await client.query(config);
      return { result, lsn: await flushLsn(client) };
    }
  }
  const wrapped = `BEGIN;\n${config.text}\n;COMMIT;${LSN_QUERY}`;
  let results: pg.QueryResult[];
  try {
    results = (await client.query({ ...config, text: wrapped })) as unknown as pg.QueryResult[];
  } catch (error) {
    if (client.getTransactionStatus?.() !== 'I') await client.query('ROLLBACK');
    if ((error as { code?: string }).code !== NOT_IN_TRANSACTION_BLOCK) throw error;
    const result = await client.query(config);
    return { result, lsn: await flushLsn(client) };
  }
  const own = results.slice(1, -2);
  // With `rowMode: 'array'` every result of the text comes as arrays, the LSN's too.
  const lsnRow = results[results.length - 1]?.rows[0] as { lsn: string } | [string] | undefined;
  const lsnText = Array.isArray(lsnRow) ? lsnRow[0] : lsnRow?.lsn;
  return {
    result: own.length === 1 ? (own[0] as pg.QueryResult) : own,
    lsn: lsnText ? parseLsn(lsnText) : null,
  };
}

/**
 * Commits the transaction open on `client` and returns the commit LSN from the same round
 * trip (`null` if the transaction wrote nothing). A transaction already aborted by an error
 * is simply ended (Postgres answers ROLLBACK) and the error is left to the caller.
 */
export async function commitWithLsn(
  client: pg.PoolClient,
): Promise<{ result: pg.QueryResult; lsn: Lsn | null }> {
  if (client.getTransactionStatus?.() === 'E') {
    return { result: await client.query('COMMIT'), lsn: null };
  }
  const results = (await client.query(
    `${XID_QUERY};COMMIT;${LSN_QUERY}`,
  )) as unknown as pg.QueryResult[];
  const xid = (results[0]?.rows[0] as { xid: string | null } | undefined)?.xid ?? null;
  const lsn = (results[2]?.rows[0] as { lsn: string } | undefined)?.lsn;
  return { result: results[1] as pg.QueryResult, lsn: xid === null || !lsn ? null : parseLsn(lsn) };
}
