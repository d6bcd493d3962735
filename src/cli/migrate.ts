import { migrate } from '../migrate/index.js';

export interface MigrateCommandOptions {
  dir?: string;
  table?: string;
  dryRun?: boolean;
  /** The app's own migration tool and its arguments. */
  command?: string[];
}

/** `regional migrate`: runs the app's migrations in the primary region, once. */
export async function migrateCommand(options: MigrateCommandOptions): Promise<void> {
  const outcome = await migrate({
    command: options.command,
    dir: options.dir,
    migrationsTable: options.table,
    dryRun: options.dryRun,
    log: (message) => process.stderr.write(`regional migrate: ${message.trimEnd()}\n`),
  });
  if (outcome.status === 'skipped') {
    process.stdout.write(`regional migrate: ${outcome.reason}\n`);
    return;
  }
  if (outcome.status === 'ran') {
    process.stdout.write(
      `regional migrate: ${outcome.command} succeeded; the schema is current as of WAL position ${outcome.schemaLsn}\n`,
    );
    return;
  }
  const what =
    outcome.applied.length === 0
      ? 'nothing to apply'
      : `${options.dryRun ? 'would apply' : 'applied'} ${outcome.applied.length} migration${outcome.applied.length > 1 ? 's' : ''} (${outcome.applied.join(', ')})`;
  const where = outcome.schemaLsn
    ? `; the schema is current as of WAL position ${outcome.schemaLsn}`
    : '';
  process.stdout.write(`regional migrate: ${what}${where}\n`);
}
