/**
 * `regional/drizzle`: Drizzle ORM over a {@link RegionalPool} (node-postgres) or a
 * `RegionalPostgres` (postgres.js), routed from Drizzle's own query objects: selects read from
 * the local replica (after waiting for the context's writes), inserts, updates and deletes go
 * to the primary and record their commit LSN, and `db.transaction()` runs on the primary — or
 * on the replica with `{ accessMode: 'read only' }`.
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
import type { PgTransactionConfig } from 'drizzle-orm/pg-core';
import {
  PgDatabase,
  PgDialect,
  type PgPreparedQuery,
  type PreparedQueryConfig,
  type SelectedFieldsOrdered,
} from 'drizzle-orm/pg-core';
import type { PostgresJsDatabase } from 'drizzle-orm/postgres-js';
import { PostgresJsSession, PostgresJsTransaction } from 'drizzle-orm/postgres-js/session';
import type { Query } from 'drizzle-orm/sql';
import type postgres from 'postgres';
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

/** What `drizzle()` takes from `regional/postgres`: its routed postgres.js `sql`. */
interface PostgresSource {
  readonly sql: postgres.Sql<Record<string, unknown>>;
}

type PostgresJsClient = ConstructorParameters<typeof PostgresJsSession>[0];

/**
 * Drizzle's postgres.js session over Regional's `sql`: writes as prepared statements
 * (postgres.js sends an unprepared parameterised statement in two round trips, and its commit
 * position could only follow in a third), and read-only transactions begun as such, so they
 * run on the replica.
 */
class RegionalPostgresJsSession extends PostgresJsSession<
  PostgresJsClient,
  Record<string, unknown>,
  never
> {
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
    if (metadata && metadata.type !== 'select')
      (prepared as unknown as { prepare: boolean }).prepare = true;
    return prepared;
  }

  override transaction<T>(
    transaction: (tx: PostgresJsTransaction<Record<string, unknown>, never>) => Promise<T>,
    config?: PgTransactionConfig,
  ): Promise<T> {
    if (config?.accessMode !== 'read only') return super.transaction(transaction, config);
    const { dialect, schema, options } = this as unknown as {
      dialect: PgDialect;
      schema: never;
      options: ConstructorParameters<typeof PostgresJsSession>[3];
    };
    return this.client.begin('read only', async (client) => {
      const session = new RegionalPostgresJsSession(
        client as unknown as PostgresJsClient,
        dialect,
        schema,
        options,
      );
      const tx = new PostgresJsTransaction<Record<string, unknown>, never>(
        dialect,
        session as never,
        schema,
      );
      await tx.setTransaction(config);
      return transaction(tx);
    }) as Promise<T>;
  }
}

// Drizzle's own postgres.js driver leaves these types as Postgres sends them (its mappers parse
// them): the same here, through `sql.options`, which Regional shares between its servers.
const TRANSPARENT_PARSERS = ['1184', '1082', '1083', '1114', '1182', '1185', '1115', '1231'];
const TRANSPARENT_SERIALIZERS = [...TRANSPARENT_PARSERS, '114', '3802'];

/**
 * Makes a Drizzle database on a `RegionalPostgres` (postgres.js), as Drizzle's own
 * `drizzle-orm/postgres-js` would on a postgres.js `sql`.
 *
 * @example
 * import { RegionalPostgres } from 'regional/postgres';
 * import { drizzlePostgres } from 'regional/drizzle';
 * const db = drizzlePostgres(new RegionalPostgres(), { schema });
 */
export function drizzlePostgres<TSchema extends Record<string, unknown> = Record<string, never>>(
  source: PostgresSource,
  config: DrizzleConfig<TSchema> = {},
): PostgresJsDatabase<TSchema> & { $client: postgres.Sql<Record<string, unknown>> } {
  const client = source.sql;
  const transparent = (value: unknown) => value;
  const { parsers, serializers } = client.options as unknown as Record<
    'parsers' | 'serializers',
    Record<string, (value: unknown) => unknown>
  >;
  for (const type of TRANSPARENT_PARSERS) parsers[type] = transparent;
  for (const type of TRANSPARENT_SERIALIZERS) serializers[type] = transparent;
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
  const session = new RegionalPostgresJsSession(
    client as unknown as PostgresJsClient,
    dialect,
    schema as never,
    { logger, cache: config.cache },
  );
  const db = new PgDatabase(
    dialect,
    session as never,
    schema as never,
  ) as unknown as PostgresJsDatabase<TSchema> & {
    $client: postgres.Sql<Record<string, unknown>>;
  };
  db.$client = client;
  return db;
}
