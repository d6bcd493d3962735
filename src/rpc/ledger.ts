import pg from 'pg';
import { RegionalError } from '../core/errors.js';
import { parseLsn } from '../core/lsn.js';
import { commitWithLsn, isConnectionFailure } from '../pg/commit-lsn.js';
import { primaryError } from '../pg/connections.js';
import { normalize, send } from '../pg/statement.js';
import type { TransactionClient, TransactionOptions } from '../pg/transaction.js';

/**
 * The record of calls that ran, on the primary: what makes a procedure run at most once.
 *
 * A call runs in one transaction that (1) takes a transaction-scoped advisory lock on its id,
 * so two deliveries of the same id run one after the other, (2) looks for the id's record and,
 * if there is one, answers with it instead of running, (3) runs the procedure, and (4) if the
 * procedure wrote anything, inserts the record — id and result — before the commit, so the
 * record exists exactly when the procedure's writes do. The commit LSN is read in the
 * commit's round trip.
 *
 * Why a lock first and not "insert the id first": inserting first would make every
 * procedure a writer; this way a procedure that wrote nothing leaves no record and no LSN
 * for its caller to wait for (running it again is harmless). The primary key still
 * serialises what the lock cannot: under REPEATABLE READ or SERIALIZABLE the snapshot is
 * taken before the lock is granted, so a second delivery may run the procedure again — its
 * record insert then fails on the key, it rolls back, and the recorded result is returned.
 *
 * A commit LSN cannot be written inside its own transaction (it is known only after the
 * commit), so a replayed call answers with `pg_current_wal_flush_lsn()` read in the same
 * statement that found the committed record: at or after that commit, which is all a
 * commit LSN must be.
 */

/** Advisory lock class for call ids: the two-key form keeps clear of an app's one-key locks. */
const LOCK_CLASS = 0x52504331; // 'RPC1'
const UNIQUE_VIOLATION = '23505';
const SERIALIZATION_FAILURE = '40001';
const CLEANUP_BATCH = 10_000;

export interface LedgerOutcome<T> {
  /** The value the procedure returned (decoded from the record when replayed). */
  value: T | undefined;
  /** The result as stored and sent (devalue text). */
  encoded: string;
  lsn: bigint | null;
  replayed: boolean;
}

export interface RunSpec<T> {
  id: string;
  name: string;
  isolationLevel: TransactionOptions['isolationLevel'];
  run(tx: TransactionClient): Promise<T>;
  /** Encodes the result before the commit, so a result that cannot be sent commits nothing. */
  encode(value: T): string;
}

/** The call records table on the primary, and running calls against it. */
export class CallLedger {
  private ready: Promise<void> | null = null;
  private readonly table: string;
  private readonly constraint: string;

  constructor(
    private readonly primary: pg.Pool,
    table: string,
    /** The pool's `REGIONAL_QUERY_TIMEOUT_MS`, named in timeout errors. */
    private readonly queryTimeoutMs = 0,
  ) {
    this.table = table
      .split('.')
      .map((part) => pg.escapeIdentifier(part))
      .join('.');
    this.constraint = `${table.split('.').pop()}_pkey`;
  }

  /** Creates the table if it is missing (once per process; again after a failure). */
  ensureTable(): Promise<void> {
    this.ready ??= this.createTable().catch((error) => {
      this.ready = null;
      throw error;
    });
    return this.ready;
  }

  /** Runs a call at most once; see the module comment for how. */
  async run<T>(spec: RunSpec<T>): Promise<LedgerOutcome<T>> {
    try {
      await this.ensureTable();
    } catch (error) {
      throw primaryError(error, 'write', { sent: false, queryTimeoutMs: this.queryTimeoutMs });
    }
    let client: pg.PoolClient;
    try {
      client = await this.primary.connect();
    } catch (error) {
      throw primaryError(error, 'write', { sent: false, queryTimeoutMs: this.queryTimeoutMs });
    }
    let broken: Error | undefined;
    try {
      await client.query(
        spec.isolationLevel
          ? `BEGIN ISOLATION LEVEL ${spec.isolationLevel.toUpperCase()}`
          : 'BEGIN',
      );
      await client.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [LOCK_CLASS, spec.id]);
      const recorded = await this.lookup(client, spec);
      if (recorded) {
        await client.query('ROLLBACK');
        return { value: undefined, ...recorded, replayed: true };
      }
      const tx: TransactionClient = {
        on: 'primary',
        client,
        query: (input, values) => send(client, normalize(input, values)),
      };
      const value = await spec.run(tx);
      const encoded = spec.encode(value);
      // Recorded only if the procedure wrote: the condition is evaluated before this
      // statement's own insert assigns a transaction id.
      await client.query(
        `INSERT INTO ${this.table} (id, name, result)
         SELECT $1, $2, $3 WHERE pg_current_xact_id_if_assigned() IS NOT NULL`,
        [spec.id, spec.name, encoded],
      );
      const { lsn } = await commitWithLsn(client);
      return { value, encoded, lsn, replayed: false };
    } catch (error) {
      if (isConnectionFailure(error)) {
        broken = error as Error;
        // Whether it committed is unknown: calling again with the same id answers from the record.
        throw primaryError(error, 'write', { client, queryTimeoutMs: this.queryTimeoutMs });
      }
      if (client.getTransactionStatus() !== 'I') {
        await client.query('ROLLBACK').catch((rollbackError: Error) => {
          broken = rollbackError; // never hand back a connection stuck in a transaction
          throw error;
        });
      }
      const code = (error as { code?: string }).code;
      const constraint = (error as { constraint?: string }).constraint;
      if (
        (code === UNIQUE_VIOLATION && constraint === this.constraint) ||
        code === SERIALIZATION_FAILURE
      ) {
        // Another delivery of this id committed first (see the module comment).
        const recorded = await this.lookup(client, spec);
        if (recorded) return { value: undefined, ...recorded, replayed: true };
      }
      throw error;
    } finally {
      client.release(broken);
    }
  }

  /**
   * Deletes records older than `olderThanMs`, in batches, and resolves with how many. Safe to
   * run from every instance at once.
   */
  async cleanup(olderThanMs: number): Promise<number> {
    await this.ensureTable();
    let deleted = 0;
    for (;;) {
      const { rowCount } = await this.primary.query(
        `DELETE FROM ${this.table} WHERE id IN (
           SELECT id FROM ${this.table} WHERE created_at < now() - make_interval(secs => $1)
           LIMIT ${CLEANUP_BATCH} FOR UPDATE SKIP LOCKED)`,
        [olderThanMs / 1000],
      );
      deleted += rowCount ?? 0;
      if ((rowCount ?? 0) < CLEANUP_BATCH) return deleted;
    }
  }

  /** The recorded result of call `id`, with an LSN at or after its commit; `null` if none. */
  private async lookup(
    client: pg.PoolClient,
    spec: { id: string; name: string },
  ): Promise<{ encoded: string; lsn: bigint } | null> {
    const { rows } = await client.query<{ name: string; result: string; lsn: string }>(
      `SELECT name, result, pg_current_wal_flush_lsn()::text AS lsn FROM ${this.table} WHERE id = $1`,
      [spec.id],
    );
    const row = rows[0];
    if (!row) return null;
    if (row.name !== spec.name) {
      throw new RegionalError(
        'REGIONAL_CALL_ID_REUSED',
        `Call id ${spec.id} was already used for procedure "${row.name}", not "${spec.name}": give every call its own id.`,
      );
    }
    return { encoded: row.result, lsn: parseLsn(row.lsn) };
  }

  private async createTable(): Promise<void> {
    const index = pg.escapeIdentifier(`${this.constraint.replace(/_pkey$/, '')}_created_at`);
    const ddl = `CREATE TABLE IF NOT EXISTS ${this.table} (
        id text PRIMARY KEY,
        name text NOT NULL,
        result text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX IF NOT EXISTS ${index} ON ${this.table} (created_at)`;
    try {
      await this.primary.query(ddl);
    } catch (error) {
      // Two instances creating it at once: one wins, the other sees a duplicate; check again.
      const code = (error as { code?: string }).code;
      if (code !== UNIQUE_VIOLATION && code !== '42P07') throw error;
      await this.primary.query(ddl);
    }
  }
}
