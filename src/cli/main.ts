import { Command, CommanderError } from 'commander';
import { MigrationCommandError } from '../migrate/index.js';
import { bench } from './bench.js';
import { demoCommand } from './demo.js';
import { dev } from './dev.js';
import { doctorCommand } from './doctor.js';
import { migrateCommand } from './migrate.js';
import { reportFailure } from './shared.js';

const program = new Command('regional')
  .description('Run one Postgres-backed TypeScript app in every region.')
  .enablePositionalOptions()
  .showHelpAfterError()
  .exitOverride();

program
  .command('dev')
  .description(
    'start a local multi-region Postgres cluster (primary + one streaming replica per other region)',
  )
  .option('--regions <list>', 'regions, comma-separated', 'iad,cdg,syd')
  .option(
    '--primary <region>',
    'the primary region (default: iad if listed, else the first region)',
  )
  .option(
    '--rtt <list>',
    'round trips in ms: region=ms (to the primary) or region-region=ms, e.g. cdg=80,syd=200,cdg-syd=280',
  )
  .option('--dir <path>', 'data directory, kept between runs', '.regional')
  .option('--fresh', 'delete the data directory first')
  .option(
    '--redis',
    'also start Redis: the primary in the primary region, a replica in every other region and a cache instance per region (needs redis-server)',
  )
  .option('--json', 'print one line of JSON on stdout once ready, and nothing else on stdout')
  .option(
    '--app <command>',
    'also start one app instance per region with this command (it must listen on PORT), behind a local edge with one entry URL per region',
  )
  .option('--replay <mode>', 'how app instances replay writes: fly-replay (default) or proxy')
  .option(
    '--dashboard-read <path>',
    'with --app: the path the local dashboard GETs in every region to show where requests run (default /)',
  )
  .option(
    '--dashboard-write <spec>',
    'with --app: the write of the dashboard\'s button, as METHOD /path JSON with {marker} in it, e.g. \'POST /posts {"body":"{marker}"}\'',
  )
  .action(async (options) => {
    try {
      await dev(options);
    } catch (error) {
      reportFailure('dev', error);
      process.exit();
    }
  });

program
  .command('demo')
  .description(
    'the forum in three regions, deployed four ways under the same workload, measured side by side (writes bench/results/demo.json and demo.svg)',
  )
  .option(
    '--serve',
    'run only the Regional deployment and keep it up; prints the entry URLs as one line of JSON',
  )
  .option('--duration <seconds>', 'measured seconds per deployment', '20')
  .option('--warmup <seconds>', 'warm-up seconds per deployment, not measured', '3')
  .option('--readers <n>', 'readers per region', '3')
  .option('--writers <n>', 'writers per region', '2')
  .option(
    '--only <names>',
    'deployments to run: one-region, app-everywhere, replicas-no-consistency, regional',
  )
  .option('--dir <path>', 'cluster data directory (default .regional/demo)')
  .option('--results <dir>', 'where demo.json and demo.svg go (default bench/results)')
  .action(async (options) => {
    try {
      await demoCommand(options);
    } catch (error) {
      reportFailure('demo', error);
    }
    process.exit();
  });

program
  .command('migrate')
  .description(
    'run the migrations against the primary, once, in the primary region only, and record the WAL position replicas must replay: node-pg-migrate files, or your own tool after --',
  )
  .argument(
    '[command...]',
    'your migration tool and its arguments, after --: e.g. regional migrate -- npx prisma migrate deploy',
  )
  .option('--dir <path>', 'folder of node-pg-migrate files (default: migrations)')
  .option('--table <name>', "node-pg-migrate's state table (default: pgmigrations)")
  .option('--dry-run', 'show what node-pg-migrate would run without running it')
  .passThroughOptions()
  .action(async (command: string[], options) => {
    try {
      await migrateCommand({ ...options, command: command.length > 0 ? command : undefined });
    } catch (error) {
      reportFailure('migrate', error);
      // A failed migration tool's own exit code is what a deploy script expects to see.
      if (error instanceof MigrationCommandError && error.exitCode)
        process.exitCode = error.exitCode;
    }
    process.exit();
  });

program
  .command('doctor')
  .description(
    "check this instance's configuration and surroundings: variables, secret, primary and replica, lag, clocks, and that other regions share the secret",
  )
  .option(
    '--peer <url...>',
    'base URL of an instance in another region to ping (REGIONAL_PRIMARY_URL is pinged anyway)',
  )
  .option('--json', 'print the findings as one line of JSON')
  .action(async (options) => {
    try {
      await doctorCommand(options);
    } catch (error) {
      reportFailure('doctor', error);
    }
    process.exit();
  });

program
  .command('bench')
  .description('run a benchmark: prints a table and writes bench/results/<name>.json')
  .argument('[name]', 'which benchmark (core, http, procedures, redis)')
  .action(async (name?: string) => {
    try {
      await bench(name);
    } catch (error) {
      reportFailure('bench', error);
    }
    process.exit();
  });

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    // Help and version exit 0; every other parsing error is a usage mistake.
    process.exit(error.exitCode === 0 ? 0 : 2);
  }
  reportFailure(program.args[0] ?? '', error);
}
