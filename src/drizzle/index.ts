/**
 * `regional/drizzle`: Drizzle ORM over a {@link RegionalPool}, routed from Drizzle's own query
 * objects: selects read from the local replica (after waiting for the context's writes),
 * inserts, updates and deletes go to the primary and record their commit LSN, and
 * `db.transaction()` runs on the primary — or on the replica with `{ accessMode: 'read only' }`.
 *
 * @example
 * import { RegionalPool } from 'regional/pg';
 * import { drizzle } from 'regional/drizzle';
 * import * as schema from './schema.js';
 *
 * const db = drizzle(new RegionalPool(), { schema });
 * await db.insert(schema.posts).values({ body: 'hello' });  // primary
 * await db.select().from(schema.posts);                     // local replica, sees the insert
 */
import {
  createTableRelationsHelpers,
  DefaultLogger,
  type DrizzleConfig,
  extractTablesRelationalConfig,
} from 'drizzle-orm';
import type { WithCacheConfig } from 'drizzle-orm/cache/core/types';
import { type NodePgClient, NodePgDatabase, NodePgSession } from 'drizzle-orm/node-postgres';
import {
  PgDialect,
  type PgPreparedQuery,
  type PreparedQueryConfig,
  type SelectedFieldsOrdered,
} from 'drizzle-orm/pg-core';
import type { Query } from 'drizzle-orm/sql';
import type { RegionalPool } from '../pg/pool.js';
import type { QueryOptions } from '../pg/statement.js';

type Kind = NonNullable<QueryOptions['kind']>;
type Routable = {
  query(config: unknown, values?: unknown[], options?: QueryOptions): Promise<unknown>;
};

/** The client a prepared query runs on, told what kind of statement it carries. */
function routedClient(client: Routable, kind: Kind): NodePgClient {
  return {
    query: (config: unknown, values?: unknown[]) => client.query(config, values, { kind }),
  } as unknown as NodePgClient;
}

/** Drizzle's node-postgres session, passing each query's kind (from Drizzle's metadata) to the pool. */
class RegionalDrizzleSession extends NodePgSession<Record<string, unknown>, never> {
  private readonly routable: Routable;

  constructor(
    pool: RegionalPool,
    ...rest: ConstructorParameters<typeof NodePgSession> extends [unknown, ...infer R] ? R : never
  ) {
    super(pool as unknown as NodePgClient, ...(rest as [PgDialect, undefined]));
    this.routable = pool as unknown as Routable;
  }

  override prepareQuery<T extends PreparedQueryConfig = PreparedQueryConfig>(
    query: Query,
    fields: SelectedFieldsOrdered | undefined,
    name: string | undefined,
    isResponseInArrayMode: boolean,
    customResultMapper?: (rows: unknown[][]) => T['execute'],
    metadata?: { type: 'select' | 'update' | 'delete' | 'insert'; tables: string[] },
    cacheConfig?: WithCacheConfig,
  ): PgPreparedQuery<T> {
    const prepared = super.prepareQuery<T>(
      query,
      fields,
      name,
      isResponseInArrayMode,
      customResultMapper,
      metadata,
      cacheConfig,
    );
    if (!metadata) return prepared; // raw SQL (db.execute): the pool classifies the text
    if (!('client' in prepared)) {
      throw new Error(
        'regional/drizzle: this Drizzle version prepares queries differently; use drizzle-orm 0.44 or 0.45',
      );
    }
    (prepared as unknown as { client: NodePgClient }).client = routedClient(
      this.routable,
      metadata.type === 'select' ? 'read' : 'write',
    );
    return prepared;
  }
}

/**
 * Makes a Drizzle database on a {@link RegionalPool}. Takes Drizzle's usual config (`schema`,
 * `logger`, `casing`, `cache`).
 */
export function drizzle<TSchema extends Record<string, unknown> = Record<string, never>>(
  pool: RegionalPool,
  config: DrizzleConfig<TSchema> = {},
): NodePgDatabase<TSchema> & { $client: RegionalPool } {
  const dialect = new PgDialect({ casing: config.casing });
  const logger = config.logger === true ? new DefaultLogger() : config.logger || undefined;
  let schema:
    | {
        fullSchema: TSchema;
        schema: ReturnType<typeof extractTablesRelationalConfig>['tables'];
        tableNamesMap: Record<string, string>;
      }
    | undefined;
  if (config.schema) {
    const tables = extractTablesRelationalConfig(config.schema, createTableRelationsHelpers);
    schema = {
      fullSchema: config.schema,
      schema: tables.tables,
      tableNamesMap: tables.tableNamesMap,
    };
  }
  const session = new RegionalDrizzleSession(pool, dialect, schema as never, {
    logger,
    cache: config.cache,
  });
  const db = new NodePgDatabase(
    dialect,
    session as never,
    schema as never,
  ) as NodePgDatabase<TSchema> & {
    $client: RegionalPool;
  };
  db.$client = pool;
  if (config.cache)
    Object.assign(db, {
      $cache: Object.assign(config.cache, { invalidate: config.cache.onMutate }),
    });
  return db;
}
