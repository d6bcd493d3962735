/**
 * `regional/kysely`: a Kysely dialect over a {@link RegionalPool}, routed from Kysely's own
 * operation nodes: select queries read from the local replica (after waiting for the
 * context's writes) unless they lock rows or hold a writing CTE; inserts, updates, deletes,
 * merges and schema changes go to the primary and record their commit LSN. Transactions run
 * on the primary, or on the replica with `setAccessMode('read only')`.
 *
 * @example
 * import { Kysely } from 'kysely';
 * import { RegionalPool } from 'regional/pg';
 * import { RegionalDialect } from 'regional/kysely';
 *
 * const db = new Kysely<Database>({ dialect: new RegionalDialect({ pool: new RegionalPool() }) });
 * await db.insertInto('posts').values({ body: 'hello' }).execute(); // primary
 * await db.selectFrom('posts').selectAll().execute();               // local replica, sees it
 */
import {
  type CompiledQuery,
  type DatabaseConnection,
  type DatabaseIntrospector,
  type Dialect,
  type DialectAdapter,
  type Driver,
  type Kysely,
  type OperationNode,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type QueryCompiler,
  type QueryResult,
  type SelectQueryNode,
  type TransactionSettings,
} from 'kysely';
import type { RegionalClient } from '../pg/client.js';
import type { RegionalPool } from '../pg/pool.js';
import type { QueryOptions } from '../pg/statement.js';

export interface RegionalDialectConfig {
  pool: RegionalPool;
  /** End the pool when the Kysely instance is destroyed (default `false`: the pool is yours). */
  endPoolOnDestroy?: boolean;
}

const LOCKING = new Set(['ForUpdate', 'ForNoKeyUpdate', 'ForShare', 'ForKeyShare']);
const WRITING_NODES = new Set([
  'InsertQueryNode',
  'UpdateQueryNode',
  'DeleteQueryNode',
  'MergeQueryNode',
]);

/** Whether a query node reads or writes; `undefined` for raw SQL, which the pool classifies. */
export function kindOfNode(node: OperationNode): QueryOptions['kind'] {
  if (node.kind === 'RawNode') return undefined;
  if (node.kind !== 'SelectQueryNode') return 'write';
  const select = node as SelectQueryNode;
  const locks = (select.endModifiers ?? []).some(
    (m) => m.modifier !== undefined && LOCKING.has(m.modifier),
  );
  const writingCte = (select.with?.expressions ?? []).some((cte) =>
    WRITING_NODES.has(cte.expression.kind),
  );
  return locks || writingCte ? 'write' : 'read';
}

function toKyselyResult<R>(result: {
  command: string;
  rowCount: number | null;
  rows: unknown[];
}): QueryResult<R> {
  const { command, rowCount, rows } = result;
  if (command === 'ROLLBACK' || command === 'COMMIT') return { rows: [{ command } as R] };
  const affected =
    command === 'INSERT' || command === 'UPDATE' || command === 'DELETE' || command === 'MERGE';
  return {
    ...(affected ? { numAffectedRows: BigInt(rowCount ?? 0) } : {}),
    rows: (rows ?? []) as R[],
  };
}

/**
 * One Kysely connection. Outside a transaction it holds nothing: each query goes through the
 * pool, routed by its node. A transaction checks out a {@link RegionalClient}, which keeps it
 * on one server.
 */
class RegionalConnection implements DatabaseConnection {
  client: RegionalClient | null = null;

  constructor(private readonly pool: RegionalPool) {}

  async executeQuery<R>(compiledQuery: CompiledQuery): Promise<QueryResult<R>> {
    const values = [...compiledQuery.parameters];
    const kind = kindOfNode(compiledQuery.query);
    const options: QueryOptions = kind ? { kind } : {};
    const result = this.client
      ? await this.client.query(compiledQuery.sql, values, options)
      : await this.pool.query(compiledQuery.sql, values, options);
    return toKyselyResult<R>(result);
  }

  // biome-ignore lint/correctness/useYield: streaming is refused before the first row.
  async *streamQuery<R>(): AsyncIterableIterator<QueryResult<R>> {
    throw new Error(
      'regional/kysely does not stream query results yet; use execute(), or pg-cursor on pool.connect({ on })',
    );
  }

  async begin(settings: TransactionSettings): Promise<void> {
    this.client = await this.pool.connect();
    let sql = 'begin';
    if (settings.isolationLevel) sql += ` isolation level ${settings.isolationLevel}`;
    if (settings.accessMode) sql += ` ${settings.accessMode}`;
    await this.client.query(sql);
  }

  async end(sql: 'commit' | 'rollback'): Promise<QueryResult<unknown>> {
    const client = this.client;
    if (!client) throw new Error(`${sql} without a transaction`);
    try {
      return toKyselyResult(await client.query(sql));
    } finally {
      client.release();
      this.client = null;
    }
  }
}

class RegionalDriver implements Driver {
  constructor(private readonly config: RegionalDialectConfig) {}

  async init(): Promise<void> {}

  async acquireConnection(): Promise<DatabaseConnection> {
    return new RegionalConnection(this.config.pool);
  }

  async beginTransaction(
    connection: DatabaseConnection,
    settings: TransactionSettings,
  ): Promise<void> {
    await (connection as RegionalConnection).begin(settings);
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    const { rows } = await (connection as RegionalConnection).end('commit');
    // Postgres answers COMMIT with ROLLBACK when an earlier error aborted the transaction.
    if ((rows[0] as { command?: string } | undefined)?.command === 'ROLLBACK') {
      throw new Error('The transaction was aborted by an earlier error and has been rolled back');
    }
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    await (connection as RegionalConnection).end('rollback');
  }

  async releaseConnection(connection: DatabaseConnection): Promise<void> {
    // A connection released inside a transaction (an error between begin and end) gives back its client.
    const regional = connection as RegionalConnection;
    regional.client?.release(true);
    regional.client = null;
  }

  async destroy(): Promise<void> {
    if (this.config.endPoolOnDestroy) await this.config.pool.end();
  }
}

/** A Kysely dialect for Postgres through a {@link RegionalPool}. */
export class RegionalDialect implements Dialect {
  constructor(private readonly config: RegionalDialectConfig) {
    if (!config?.pool) throw new TypeError('RegionalDialect needs { pool: new RegionalPool(...) }');
  }

  createAdapter(): DialectAdapter {
    return new PostgresAdapter();
  }

  createDriver(): Driver {
    return new RegionalDriver(this.config);
  }

  createQueryCompiler(): QueryCompiler {
    return new PostgresQueryCompiler();
  }

  // biome-ignore lint/suspicious/noExplicitAny: Kysely's own dialects take Kysely<any> here.
  createIntrospector(db: Kysely<any>): DatabaseIntrospector {
    return new PostgresIntrospector(db);
  }
}
