/**
 * `regional/migrate`: migrations that run once, in the primary region, and record the WAL
 * position at which the schema became current, so instances in replica regions can report
 * ready only once their replica has replayed it.
 *
 * Migrations are node-pg-migrate's own: SQL files (`-- Up Migration` / `-- Down Migration`)
 * or JS/TS files exporting `up`/`down`, in `migrations/`, with their state in the
 * `pgmigrations` table of the database itself.
 *
 * @example
 * import { migrate } from 'regional/migrate';
 * const outcome = await migrate({ dir: 'migrations' }); // PRIMARY_REGION, REGION, DATABASE_URL
 * if (outcome.status === 'skipped') console.log(outcome.reason);
 */
import { runner } from 'node-pg-migrate';
import pg from 'pg';
import { loadConfig, type RegionalConfig, type RegionalOptions } from '../core/config.js';
import { type Lsn, parseLsn } from '../core/lsn.js';

/** The table that holds the position at which the schema became current. */
export const SCHEMA_TABLE = 'regional_schema';
// One number for "a regional migrate is running" (two instances started together wait on it).
const MIGRATE_LOCK_KEY = 7_241_865_325_823_001n;

export interface MigrateOptions extends RegionalOptions {
  /** Folder of migration files (default `migrations`). */
  dir?: string;
  /** node-pg-migrate's state table (default `pgmigrations`). */
  migrationsTable?: string;
  /** Show what would run without running it. */
  dryRun?: boolean;
  /** Receives progress lines (default: discarded). */
  log?: (message: string) => void;
  /** An already resolved configuration. */
  config?: RegionalConfig;
}

export type MigrateOutcome =
  | { status: 'skipped'; reason: string }
  | {
      status: 'migrated';
      /** Migrations applied by this run (none if another run had applied them). */
      applied: string[];
      /** The position replicas must replay before new code may serve (null on a dry run). */
      schemaLsn: string | null;
    };

/**
 * Runs pending migrations against the primary, once: in a replica region it does nothing and
 * says why; two runs at once take turns on an advisory lock, so the second finds nothing left.
 */
export async function migrate(options: MigrateOptions = {}): Promise<MigrateOutcome> {
  const config = options.config ?? loadConfig(options);
  const log = options.log ?? (() => {});
  if (!config.isPrimaryRegion) {
    return {
      status: 'skipped',
      reason: `this instance runs in ${config.region}; migrations run only in the primary region (${config.primaryRegion}). Nothing to do here.`,
    };
  }
  const client = new pg.Client({
    connectionString: config.databaseUrl,
    application_name: 'regional-migrate',
  });
  // A connection that breaks fails the query in progress; the event would only crash the process.
  client.on('error', () => {});
  await client.connect();
  try {
    log('waiting for the migration lock');
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATE_LOCK_KEY.toString()]);
    const applied = await runner({
      dbClient: client,
      dir: options.dir ?? 'migrations',
      migrationsTable: options.migrationsTable ?? 'pgmigrations',
      direction: 'up',
      checkOrder: true,
      dryRun: options.dryRun ?? false,
      advisoryLockMode: 'wait',
      log,
    });
    if (options.dryRun)
      return { status: 'migrated', applied: applied.map((m) => m.name), schemaLsn: null };
    await client.query(`CREATE TABLE IF NOT EXISTS ${SCHEMA_TABLE} (
      id boolean PRIMARY KEY DEFAULT true CHECK (id),
      lsn pg_lsn NOT NULL,
      last_migration text,
      migrated_at timestamptz NOT NULL DEFAULT now()
    )`);
    const existing = await client.query<{ lsn: string }>(`SELECT lsn::text FROM ${SCHEMA_TABLE}`);
    if (applied.length > 0 || existing.rowCount === 0) {
      // Every migration has committed by now, so the flush position covers them all.
      const { rows } = await client.query<{ lsn: string }>(
        `INSERT INTO ${SCHEMA_TABLE} (lsn, last_migration) VALUES (pg_current_wal_flush_lsn(), $1)
         ON CONFLICT (id) DO UPDATE SET lsn = EXCLUDED.lsn, last_migration = EXCLUDED.last_migration, migrated_at = now()
         RETURNING lsn::text`,
        [applied.at(-1)?.name ?? null],
      );
      return {
        status: 'migrated',
        applied: applied.map((m) => m.name),
        schemaLsn: (rows[0] as { lsn: string }).lsn,
      };
    }
    return {
      status: 'migrated',
      applied: [],
      schemaLsn: (existing.rows[0] as { lsn: string }).lsn,
    };
  } finally {
    await client
      .query('SELECT pg_advisory_unlock($1)', [MIGRATE_LOCK_KEY.toString()])
      .catch(() => {});
    await client.end();
  }
}

/**
 * The position at which the schema became current, read from the primary with `query`;
 * `null` if `regional migrate` has never run there.
 *
 * @example
 * const lsn = await schemaLsn((sql) => pool.primaryPool.query(sql));
 */
export async function schemaLsn(
  query: (sql: string) => Promise<{ rows: unknown[] }>,
): Promise<Lsn | null> {
  // Asked without failing when the table is missing: a failed query would cost a pooled
  // connection (node-postgres's pool drops a connection whose query failed).
  const { rows: exists } = (await query(
    `SELECT to_regclass('${SCHEMA_TABLE}') IS NOT NULL AS present`,
  )) as { rows: { present: boolean }[] };
  if (!exists[0]?.present) return null;
  const { rows } = (await query(`SELECT lsn::text AS lsn FROM ${SCHEMA_TABLE}`)) as {
    rows: { lsn: string }[];
  };
  return rows[0] ? parseLsn(rows[0].lsn) : null;
}
