import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkReadiness } from '../health/readiness.js';
import { RegionalPool } from '../pg/pool.js';
import { LocalCluster } from '../testing/cluster.js';
import { migrate } from './index.js';

const root = path.resolve(import.meta.dirname, '../..');
let cluster: LocalCluster;
let dir: string;
let toolDir: string;
const pools: RegionalPool[] = [];

beforeAll(async () => {
  cluster = await LocalCluster.start({
    temporary: true,
    regions: ['iad', 'syd'],
    rttMs: { syd: 40 },
  });
  dir = mkdtempSync(path.join(os.tmpdir(), 'regional-migrations-'));
  toolDir = mkdtempSync(path.join(os.tmpdir(), 'regional-migration-tool-'));
  // Slow enough that two runs started together overlap.
  writeFileSync(
    path.join(dir, '001_things.sql'),
    '-- Up Migration\nCREATE TABLE things (id int PRIMARY KEY, note text);\nSELECT pg_sleep(0.5);\nINSERT INTO things VALUES (1, $$once$$);\n-- Down Migration\nDROP TABLE things;\n',
  );
});

afterAll(async () => {
  await Promise.all(pools.map((p) => p.end()));
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
  rmSync(toolDir, { recursive: true, force: true });
});

function regionalMigrate(
  region: string,
  args: string[] = ['--dir', dir],
  env: Record<string, string> = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      [path.join(root, 'bin/regional.js'), 'migrate', ...args],
      {
        env: { ...process.env, ...cluster.env(region), ...env },
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

function pool(region: string, options: { maxWaitMs?: number } = {}): RegionalPool {
  const env = cluster.env(region);
  const p = new RegionalPool({
    primaryRegion: env.PRIMARY_REGION,
    region,
    databaseUrl: env.DATABASE_URL,
    replicaUrl: env.DATABASE_REPLICA_URL ?? null,
    onWarning: () => {},
    ...options,
  });
  pools.push(p);
  return p;
}

describe('regional migrate', () => {
  it('two runs at once: the migration applies once and both exit 0', async () => {
    const [a, b] = await Promise.all([regionalMigrate('iad'), regionalMigrate('iad')]);
    expect([a.code, b.code]).toEqual([0, 0]);
    const outputs = [a.stdout, b.stdout].sort();
    expect(outputs[0]).toMatch(
      /applied 1 migration \(001_things\); the schema is current as of WAL position \d+\/[0-9A-F]+/,
    );
    expect(outputs[1]).toMatch(/nothing to apply/);
    const { rows } = await cluster.query('iad', 'SELECT count(*)::int AS n FROM things');
    expect(rows[0]?.n).toBe(1);
    const migrations = await cluster.query('iad', 'SELECT name FROM pgmigrations');
    expect(migrations.rows).toEqual([{ name: '001_things' }]);
  });

  it('in a replica region it does nothing and says why', async () => {
    const result = await regionalMigrate('syd');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(
      /runs in syd; migrations run only in the primary region \(iad\)\. Nothing to do here\./,
    );
  });

  it('a bad DATABASE_URL is a clear error and exit code 1', async () => {
    const child = spawn(
      process.execPath,
      [path.join(root, 'bin/regional.js'), 'migrate', '--dir', dir],
      {
        env: { ...process.env, DATABASE_URL: 'nonsense', PRIMARY_REGION: '' },
      },
    );
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise((resolve) => child.on('exit', resolve));
    expect(code).toBe(1);
    expect(stderr).toMatch(/DATABASE_URL: "nonsense" is not a URL/);
  });
});

describe('regional migrate -- <your migration tool>', () => {
  // A stand-in for `prisma migrate deploy` or `drizzle-kit migrate`: connects to DATABASE_URL,
  // logs when it ran, migrates (slowly enough for two runs to overlap), exits with TOOL_EXIT.
  const tool = () => {
    const file = path.join(toolDir, 'tool.cjs');
    writeFileSync(
      file,
      `const pg = require(${JSON.stringify(createRequire(import.meta.url).resolve('pg'))});
       (async () => {
         const client = new pg.Client(process.env.DATABASE_URL);
         await client.connect();
         await client.query('CREATE TABLE IF NOT EXISTS tool_runs (id serial PRIMARY KEY, started timestamptz NOT NULL, ended timestamptz)');
         const { rows } = await client.query('INSERT INTO tool_runs (started) VALUES (clock_timestamp()) RETURNING id');
         await client.query('CREATE TABLE IF NOT EXISTS widgets (id int PRIMARY KEY)');
         await client.query('SELECT pg_sleep(0.3)');
         await client.query('UPDATE tool_runs SET ended = clock_timestamp() WHERE id = $1', [rows[0].id]);
         await client.end();
         console.log('tool: migrated');
         process.exit(Number(process.env.TOOL_EXIT ?? 0));
       })();`,
    );
    return ['--', process.execPath, file];
  };
  const runs = async () =>
    (
      await cluster.query<{ started: Date; ended: Date }>(
        'iad',
        'SELECT started, ended FROM tool_runs ORDER BY id',
      )
    ).rows;
  const recorded = async () =>
    (await cluster.query<{ lsn: string }>('iad', 'SELECT lsn::text AS lsn FROM regional_schema'))
      .rows[0]?.lsn;

  it('runs the tool against the primary, its output shown, and records the schema position after it', async () => {
    const result = await regionalMigrate('iad', tool());
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('tool: migrated');
    const lsn = /succeeded; the schema is current as of WAL position (\S+)/.exec(
      result.stdout,
    )?.[1];
    expect(lsn).toBeDefined();
    expect(await recorded()).toBe(lsn);
    const { rows } = await cluster.query(
      'iad',
      "SELECT to_regclass('widgets') IS NOT NULL AS made",
    );
    expect(rows[0]?.made).toBe(true);
  });

  it('two runs at once take turns on the lock: the tool never runs twice at the same time', async () => {
    const before = (await runs()).length;
    const [a, b] = await Promise.all([
      regionalMigrate('iad', tool()),
      regionalMigrate('iad', tool()),
    ]);
    expect([a.code, b.code]).toEqual([0, 0]);
    const [first, second] = (await runs()).slice(before);
    expect(second?.started.getTime()).toBeGreaterThanOrEqual(first?.ended.getTime() as number);
  });

  it('in a replica region the tool does not run', async () => {
    const before = (await runs()).length;
    const result = await regionalMigrate('syd', tool());
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/migrations run only in the primary region \(iad\)/);
    expect((await runs()).length).toBe(before);
  });

  it('a failing tool: its exit code, a message naming it, and the schema position left as it was', async () => {
    const before = await recorded();
    const result = await regionalMigrate('iad', tool(), { TOOL_EXIT: '3' });
    expect(result.code).toBe(3);
    expect(result.stderr).toMatch(
      /tool\.cjs" exited with code 3; the schema position was not recorded/,
    );
    expect(await recorded()).toBe(before);
  });

  it('node-pg-migrate options with a command are refused by name', async () => {
    const result = await regionalMigrate('iad', ['--dry-run', ...tool()]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/dryRun.*not to a migration command/);
  });
});

describe('readiness', () => {
  it('with replay paused in syd, a syd instance is not ready after a migration, and ready once replay resumes', async () => {
    const syd = pool('syd', { maxWaitMs: 300 });
    expect((await checkReadiness({ pool: syd })).ready).toBe(true);
    await cluster.pauseReplay('syd');
    try {
      writeFileSync(
        path.join(dir, '002_more.sql'),
        '-- Up Migration\nALTER TABLE things ADD COLUMN extra int;\n',
      );
      const outcome = await migrate({ ...envOptions('iad'), dir });
      expect(outcome).toMatchObject({ status: 'migrated', applied: ['002_more'] });
      const report = await checkReadiness({ pool: syd });
      expect(report.ready).toBe(false);
      expect(report.failed).toContain('schema');
      expect(report.checks.schema?.detail).toMatch(/current schema needs/);
    } finally {
      await cluster.resumeReplay('syd');
    }
    await cluster.waitForReplay('syd');
    const after = await checkReadiness({ pool: syd });
    expect(after).toMatchObject({ ready: true, failed: [] });
  });

  it('fails, naming the check, when the replica is down', async () => {
    const syd = pool('syd');
    await cluster.server('syd').stop();
    try {
      const report = await checkReadiness({ pool: syd });
      expect(report.ready).toBe(false);
      expect(report.failed).toEqual(['replica']);
    } finally {
      await cluster.server('syd').start();
    }
  });

  it('fails, naming the check, when lag exceeds the bound', async () => {
    const syd = pool('syd');
    await cluster.pauseReplay('syd');
    try {
      await cluster.query('iad', 'UPDATE things SET note = $1', ['lagging']);
      const report = await checkReadiness({ pool: syd, maxLagMs: 200 });
      expect(report.failed).toEqual(['lag']);
      expect(report.checks.lag?.detail).toMatch(/more than 200 ms behind/);
    } finally {
      await cluster.resumeReplay('syd');
    }
  });

  it('fails, naming the check, when the primary is unreachable', async () => {
    const syd = pool('syd');
    await cluster.link('syd', 'iad').cut('refuse');
    try {
      const report = await checkReadiness({ pool: syd });
      expect(report.ready).toBe(false);
      expect(report.failed).toEqual(['primary']);
      expect(report.checks.lag?.status).toBe('skipped');
    } finally {
      await cluster.link('syd', 'iad').restore();
    }
  });

  it('in the primary region only the primary is checked', async () => {
    const report = await checkReadiness({ pool: pool('iad') });
    expect(report).toMatchObject({ ready: true, region: 'iad' });
    expect(report.checks.replica?.status).toBe('skipped');
  });
});

function envOptions(region: string) {
  const env = cluster.env(region);
  return { primaryRegion: env.PRIMARY_REGION, region, databaseUrl: env.DATABASE_URL };
}
