import { type ChildProcessWithoutNullStreams, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { Client } from '../../test/support/http-client.js';
import { describeWithRedis, redisServersIn } from '../../test/support/redis.js';

const root = path.resolve(import.meta.dirname, '../..');
const bin = path.join(root, 'bin/regional.js');
const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function run(args: string[]): ChildProcessWithoutNullStreams {
  return spawn(process.execPath, [bin, ...args], { cwd: root });
}

function collect(child: ChildProcessWithoutNullStreams) {
  const out = { stdout: '', stderr: '' };
  child.stdout.on('data', (d) => (out.stdout += d));
  child.stderr.on('data', (d) => (out.stderr += d));
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { out, exit };
}

/** Processes of the app instances started for the cluster in `dir` (their command names it). */
const appsIn = (dir: string) =>
  execFileSync('ps', ['-eo', 'args='], { encoding: 'utf8' })
    .split('\n')
    .filter((line) => line.includes(`dev-app.ts ${dir}`));

/** Waits until `out.stdout` holds `marker`; fails if the command exits first. */
async function until(
  child: ChildProcessWithoutNullStreams,
  out: { stdout: string; stderr: string },
  marker: string,
) {
  while (!out.stdout.includes(marker)) {
    if (child.exitCode !== null) throw new Error(`exited early: ${out.stderr}`);
    await sleep(50);
  }
}

/**
 * The cluster's password, from the full URLs `--json` prints (for scripts) on a first start in
 * `dir`; later starts in `dir` use the same one.
 */
async function passwordOf(dir: string, extra: string[] = []): Promise<string> {
  const child = run(['dev', '--json', '--dir', dir, '--regions', 'iad,syd', ...extra]);
  const { out, exit } = collect(child);
  await until(child, out, '\n');
  const ready = JSON.parse(out.stdout) as { regions: { syd: { databaseUrl: string } } };
  child.kill('SIGINT');
  expect(await exit).toBe(0);
  const password = decodeURIComponent(new URL(ready.regions.syd.databaseUrl).password);
  expect(password.length).toBeGreaterThan(8);
  return password;
}

const serversIn = (dir: string) =>
  execFileSync('ps', ['-eo', 'args='], { encoding: 'utf8' })
    .split('\n')
    .filter((line) => line.includes(` -D ${dir}`));

describe('regional dev', () => {
  it.each([
    [['--rtt', 'xyz=10'], /--rtt: "xyz" names region "xyz"/],
    [['--primary', 'lhr'], /--primary: "lhr" is not among the regions/],
    [['--rtt', 'syd=-5'], /--rtt: "syd=-5"/],
    [['--regions', 'iad,IAD'], /--regions:/],
    [['--no-such-flag'], /unknown option/],
    [
      ['--replay', 'redirect', '--app', 'x'],
      /--replay: must be fly-replay or proxy, got "redirect"/,
    ],
    [['--replay', 'proxy'], /--replay: only applies to app instances started with --app/],
    [['--app', ' '], /--app: give the command/],
    [
      ['--dashboard-read', '/x'],
      /--dashboard-read: only applies to app instances started with --app/,
    ],
    [['--app', 'x', '--dashboard-read', 'x'], /--dashboard-read: a path, starting with "\/"/],
    [
      ['--app', 'x', '--dashboard-write', 'GET /x {}'],
      /--dashboard-write: give "METHOD \/path JSON"/,
    ],
    [['--app', 'x', '--dashboard-write', 'POST /x {"a":1}'], /must hold "\{marker\}"/],
    [['--app', 'x', '--dashboard-write', 'POST /x {marker}'], /--dashboard-write: not JSON/],
  ])('%j exits 2 with a clear message', async (args, message) => {
    const { out, exit } = collect(run(['dev', ...args]));
    expect(await exit).toBe(2);
    expect(out.stderr).toMatch(message);
    expect(out.stdout).toBe('');
  });

  it('--json prints exactly one line of JSON once ready; SIGINT stops it with nothing left running', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'regional-cluster-cli-'));
    dirs.push(dir);
    const child = run(['dev', '--json', '--dir', dir, '--regions', 'iad,syd', '--rtt', 'syd=20']);
    const { out, exit } = collect(child);
    while (!out.stdout.includes('\n')) {
      if (child.exitCode !== null) throw new Error(`exited early: ${out.stderr}`);
      await sleep(50);
    }
    const ready = JSON.parse(out.stdout) as {
      primaryRegion: string;
      regions: Record<string, { databaseUrl: string; replicaUrl: string | null }>;
    };
    expect(ready.primaryRegion).toBe('iad');
    expect(ready.regions.iad?.replicaUrl).toBeNull();
    expect(ready.regions.syd?.databaseUrl).toMatch(/^postgres:\/\//);
    expect(ready.regions.syd?.replicaUrl).toMatch(/^postgres:\/\//);
    expect(serversIn(dir).length).toBe(2);
    child.kill('SIGINT');
    expect(await exit).toBe(0);
    expect(out.stdout.trim().split('\n')).toHaveLength(1);
    expect(serversIn(dir)).toEqual([]);
  });

  it('prints the ready table: region, role, URLs (passwords hidden) and measured lag', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'regional-cluster-cli-'));
    dirs.push(dir);
    const password = await passwordOf(dir);
    const child = run(['dev', '--dir', dir, '--regions', 'iad,syd', '--rtt', 'syd=20']);
    const { out, exit } = collect(child);
    await until(child, out, 'Ctrl-C');
    expect(out.stdout).toMatch(/region\s+role\s+primary URL/);
    expect(out.stdout).toMatch(
      /syd\s+replica\s+postgres:\/\/regional:\*\*\*@\S+\s+postgres:\/\/regional:\*\*\*@\S+\s+\d+ ms/,
    );
    expect(out.stdout).not.toContain(password);
    child.kill('SIGTERM');
    expect(await exit).toBe(0);
    expect(serversIn(dir)).toEqual([]);
  });

  /** Starts `regional dev --json --app` on a new directory; resolves once its JSON line is out. */
  async function devWithApp(extra: string[]) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'regional-cluster-cli-'));
    dirs.push(dir);
    // The directory in the command line names this run's app processes.
    const app = `node --import tsx test/support/dev-app.ts ${dir}`;
    const args = ['--dir', dir, '--regions', 'iad,syd', '--rtt', 'syd=40', '--app', app];
    args.push(
      '--dashboard-write',
      'POST /posts {"body":"{marker}"}',
      '--dashboard-read',
      '/posts/1',
    );
    const child = run(['dev', '--json', ...args, ...extra]);
    const { out, exit } = collect(child);
    while (!out.stdout.includes('\n')) {
      if (child.exitCode !== null) throw new Error(`exited early: ${out.stderr}`);
      await sleep(50);
    }
    const ready = JSON.parse(out.stdout) as { entries: Record<string, string>; dashboard: string };
    return { dir, child, out, exit, ready };
  }

  it.each(['fly-replay', 'proxy'])(
    "--app starts one instance per region behind the edge (%s): a POST in syd runs in iad, the GET after it in syd sees it; the dashboard's write arrives in both; SIGINT stops everything",
    async (mode) => {
      const { dir, child, out, exit, ready } = await devWithApp(['--replay', mode]);
      expect(Object.keys(ready.entries)).toEqual(['iad', 'syd']);
      expect(appsIn(dir).length).toBeGreaterThanOrEqual(2);

      const client = new Client(ready.entries.syd as string);
      const post = await client.send('POST', '/posts', { json: { body: 'from syd' } });
      expect(post.status, out.stderr).toBe(303);
      expect(post.header('x-regional-region')).toBe('iad');
      const get = await client.get(post.header('location') as string);
      expect(get.json()).toMatchObject({ body: 'from syd', region: 'syd' });
      expect(get.header('x-regional-region')).toBe('syd');
      expect(out.stderr).toMatch(/\[app syd\] listening on \d+ in syd/);

      // The dashboard: both regions; this app exports no /metrics, and the dashboard says so;
      // its write (the --dashboard-write given) is read back in both regions.
      const dashboard = new Client(ready.dashboard);
      const state = async () =>
        (await dashboard.get('/api/state')).json<{
          regions: { region: string; metricsError: string | null; ready: boolean | null }[];
          write: { state: string; ranIn: string; arrivals: { region: string; state: string }[] };
        }>();
      const { regions } = await state();
      expect(regions.map((r) => [r.region, r.metricsError])).toEqual([
        ['iad', 'GET /metrics answered 404'],
        ['syd', 'GET /metrics answered 404'],
      ]);
      expect(regions.every((r) => r.ready)).toBe(true);
      const started = await dashboard.send('POST', '/api/write', { json: { region: 'syd' } });
      expect(started.status, started.text).toBe(202);
      let write = (await state()).write;
      for (let i = 0; i < 200 && ['writing', 'spreading'].includes(write.state); i++) {
        await sleep(50);
        write = (await state()).write;
      }
      expect(write).toMatchObject({
        state: 'done',
        ranIn: 'iad',
        arrivals: [
          { region: 'iad', state: 'arrived' },
          { region: 'syd', state: 'arrived' },
        ],
      });

      child.kill('SIGINT');
      expect(await exit).toBe(0);
      expect(out.stdout.trim().split('\n')).toHaveLength(1);
      expect(appsIn(dir)).toEqual([]);
      expect(serversIn(dir)).toEqual([]);
    },
  );

  it('--app: instances and servers are stopped even when regional dev is killed with SIGKILL', async () => {
    const { dir, child, exit } = await devWithApp([]);
    expect(appsIn(dir).length).toBeGreaterThanOrEqual(2);
    child.kill('SIGKILL');
    await exit;
    for (let i = 0; i < 200 && (appsIn(dir).length > 0 || serversIn(dir).length > 0); i++)
      await sleep(100);
    expect(appsIn(dir)).toEqual([]);
    expect(serversIn(dir)).toEqual([]);
  });
});

describeWithRedis('regional dev --redis', () => {
  it('prints Redis URLs per region and stops every Redis server on SIGINT', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'regional-cluster-cli-'));
    dirs.push(dir);
    const password = await passwordOf(dir, ['--redis']);
    const child = run(['dev', '--redis', '--dir', dir, '--regions', 'iad,syd', '--rtt', 'syd=20']);
    const { out, exit } = collect(child);
    await until(child, out, 'Ctrl-C');
    expect(out.stdout).toMatch(/REDIS_URL \(primary, from this region\)/);
    const hidden = 'redis:\\/\\/:\\*\\*\\*@\\S+';
    expect(out.stdout).toMatch(new RegExp(`syd\\s+${hidden}\\s+${hidden}\\s+${hidden}`));
    expect(out.stdout).toMatch(new RegExp(`iad\\s+${hidden}\\s+-\\s+${hidden}`));
    expect(out.stdout).not.toContain(password);
    const redisPids = () => redisServersIn(dir);
    expect(redisPids()).toHaveLength(4);
    child.kill('SIGINT');
    expect(await exit).toBe(0);
    expect(serversIn(dir)).toEqual([]);
    expect(redisPids()).toEqual([]);
  });
});
