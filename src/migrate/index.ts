/**
 * `regional/migrate`: migrations that run once, in the primary region, and record the WAL
 * position at which the schema became current, so instances in replica regions can report
 * ready only once their replica has replayed it.
 *
 * Migrations are node-pg-migrate's own: SQL files (`-- Up Migration` / `-- Down Migration`)
 * or JS/TS files exporting `up`/`down`, in `migrations/`, with their state in the
 * `pgmigrations` table of the database itself — or the app's own tool's, run as a command
 * (`prisma migrate deploy`, `drizzle-kit migrate`, …) under the same lock.
 *
 * @example
 * import { migrate } from 'regional/migrate';
 * const outcome = await migrate({ dir: 'migrations' }); // PRIMARY_REGION, REGION, DATABASE_URL
 * if (outcome.status === 'skipped') console.log(outcome.reason);
 */
import { spawn } from 'node:child_process';
import pg from 'pg';
import { loadConfig, type RegionalConfig, type RegionalOptions } from '../core/config.js';
import { ConfigError, RegionalError } from '../core/errors.js';
import { type Lsn, parseLsn } from '../core/lsn.js';

/** The table that holds the position at which the schema became current. */
export const SCHEMA_TABLE = 'regional_schema';
// One number for "a regional migrate is running" (two instances started together wait on it).
const MIGRATE_LOCK_KEY = 7_241_865_325_823_001n;

export interface MigrateOptions extends RegionalOptions {
  /**
   * The app's own migration tool, run in place of node-pg-migrate, as a command and its
   * arguments: e.g. `['npx', 'prisma', 'migrate', 'deploy']` or `['npx', 'drizzle-kit',
   * 'migrate']`. It runs with this process's environment (its `DATABASE_URL` is the primary's:
   * commands run only in the primary region) and its output goes to this process's.
   */
  command?: readonly string[];
  /** Folder of migration files (default `migrations`); node-pg-migrate only. */
  dir?: string;
  /** node-pg-migrate's state table (default `pgmigrations`). */
  migrationsTable?: string;
  /** Show what would run without running it; node-pg-migrate only. */
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
    }
  | {
      /** `command` ran and exited 0. */
      status: 'ran';
      command: string;
      /** The position replicas must replay before new code may serve. */
      schemaLsn: string;
    };

/** A migration command that exited with another code than 0 (or was killed). */
export class MigrationCommandError extends RegionalError {
  constructor(
    readonly command: string,
    readonly exitCode: number | null,
    readonly signal: NodeJS.Signals | null,
  ) {
    super(
      'REGIONAL_MIGRATION_FAILED',
      `the migration command "${command}" ${signal ? `was killed by ${signal}` : `exited with code ${exitCode}`}; the schema position was not recorded`,
    );
    this.name = 'MigrationCommandError';
  }
}

/**
 * Runs pending migrations against the primary, once: in a replica region it does nothing and
 * says why; two runs at once take turns on an advisory lock, so the second finds nothing left.
 * With `command`, the app's own migration tool runs under that lock instead, and the position
 * is recorded once it exits 0.
 */
export async function migrate(options: MigrateOptions = {}): Promise<MigrateOutcome> {
  const config = options.config ?? loadConfig(options);
  const log = options.log ?? (() => {});
  const command = options.command;
  if (command !== undefined) {
    if (command.length === 0 || command.some((part) => typeof part !== 'string' || part === ''))
      throw new ConfigError(
        'command',
        'must be a program and its arguments, e.g. ["npx", "prisma", "migrate", "deploy"]',
      );
    if (options.dryRun || options.dir !== undefined || options.migrationsTable !== undefined)
      throw new ConfigError(
        options.dryRun ? 'dryRun' : options.dir !== undefined ? 'dir' : 'migrationsTable',
        'applies to node-pg-migrate files, not to a migration command (the command takes its own options)',
      );
  }
  if (!config.isPrimaryRegion) {
    return {
      status: 'skipped',
      reason: `this instance runs in ${config.region}; migrations run only in the primary region (${config.primaryRegion}). Nothing to do here.`,
    };
  }
  if (command) {
    return withMigrationLock(config, log, async (client) => {
      await runCommand(command, log);
      return {
        status: 'ran',
        command: command.join(' '),
        schemaLsn: await recordSchema(client, null),
      };
    });
  }
  // Only this path needs node-pg-migrate: loaded before connecting, so a missing one says so first.
  const runner = await loadRunner();
  return withMigrationLock(config, log, async (client) => {
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
    const names = applied.map((m) => m.name);
    if (options.dryRun) return { status: 'migrated', applied: names, schemaLsn: null };
    const current = names.length > 0 ? null : await readSchema(client);
    return {
      status: 'migrated',
      applied: names,
      schemaLsn: current ?? (await recordSchema(client, names.at(-1) ?? null)),
    };
  });
}

/** The range of node-pg-migrate whose `runner` Regional calls (its optional peer dependency). */
const NODE_PG_MIGRATE_RANGE = '^9.0.0';

/**
 * node-pg-migrate's `runner`. node-pg-migrate is an optional peer dependency: apps that run
 * their own tool (`command`) never load it, so it is not installed with Regional.
 */
async function loadRunner(): Promise<typeof import('node-pg-migrate').runner> {
  try {
    return (await import('node-pg-migrate')).runner;
  } catch (error) {
    // Only node-pg-migrate itself missing is this error, not a module it fails to find.
    const { code, message } = error as { code?: unknown; message?: unknown };
    const missing =
      (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') &&
      String(message).includes("'node-pg-migrate'");
    if (!missing) throw error;
    throw new RegionalError(
      'REGIONAL_PACKAGE_MISSING',
      'migration files run with node-pg-migrate, which is not installed: ' +
        `npm install node-pg-migrate@${NODE_PG_MIGRATE_RANGE} (or run your own migration tool ` +
        'instead: regional migrate -- <command>, or migrate({ command }))',
      { cause: error },
    );
  }
}

/** Runs `fn` on a connection to the primary that holds the migration lock. */
async function withMigrationLock<T>(
  config: RegionalConfig,
  log: (message: string) => void,
  fn: (client: pg.Client) => Promise<T>,
): Promise<T> {
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
    return await fn(client);
  } finally {
    await client
      .query('SELECT pg_advisory_unlock($1)', [MIGRATE_LOCK_KEY.toString()])
      .catch(() => {});
    await client.end();
  }
}

/** Runs the app's migration tool with this process's environment and output. */
function runCommand(command: readonly string[], log: (message: string) => void): Promise<void> {
  const [program, ...args] = command as [string, ...string[]];
  const text = command.join(' ');
  log(`running ${text}`);
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { stdio: 'inherit' });
    // Ctrl-C or a deploy's SIGTERM reaches the tool too; the lock is released when it ends.
    const forward = (signal: NodeJS.Signals) => child.kill(signal);
    process.on('SIGINT', forward).on('SIGTERM', forward);
    const done = () => process.off('SIGINT', forward).off('SIGTERM', forward);
    child.on('error', (error) => {
      done();
      reject(
        new RegionalError(
          'REGIONAL_MIGRATION_FAILED',
          `could not start the migration command "${text}": ${error.message}`,
          { cause: error },
        ),
      );
    });
    child.on('exit', (code, signal) => {
      done();
      if (code === 0) resolve();
      else reject(new MigrationCommandError(text, code, signal));
    });
  });
}

/** The recorded schema position, or `null` if none is recorded yet. */
async function readSchema(client: pg.Client): Promise<string | null> {
  await ensureSchemaTable(client);
  const { rows } = await client.query<{ lsn: string }>(`SELECT lsn::text FROM ${SCHEMA_TABLE}`);
  return rows[0]?.lsn ?? null;
}

/** Records the primary's flush position as the one at which the schema became current. */
async function recordSchema(client: pg.Client, lastMigration: string | null): Promise<string> {
  await ensureSchemaTable(client);
  // Every migration has committed by now, so the flush position covers them all.
  const { rows } = await client.query<{ lsn: string }>(
    `INSERT INTO ${SCHEMA_TABLE} (lsn, last_migration) VALUES (pg_current_wal_flush_lsn(), $1)
     ON CONFLICT (id) DO UPDATE SET lsn = EXCLUDED.lsn, last_migration = EXCLUDED.last_migration, migrated_at = now()
     RETURNING lsn::text`,
    [lastMigration],
  );
  return (rows[0] as { lsn: string }).lsn;
}

function ensureSchemaTable(client: pg.Client): Promise<unknown> {
  return client.query(`CREATE TABLE IF NOT EXISTS ${SCHEMA_TABLE} (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    lsn pg_lsn NOT NULL,
    last_migration text,
    migrated_at timestamptz NOT NULL DEFAULT now()
  )`);
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
