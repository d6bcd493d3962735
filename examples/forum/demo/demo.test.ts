import { type ChildProcessWithoutNullStreams, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { Client } from '../../../test/support/http-client.js';

const ROOT = path.resolve(import.meta.dirname, '../../..');

function regional(args: string[]): {
  child: ChildProcessWithoutNullStreams;
  out: { stdout: string; stderr: string };
  exit: Promise<number | null>;
} {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin/regional.js'), ...args], {
    cwd: ROOT,
  });
  const out = { stdout: '', stderr: '' };
  child.stdout.on('data', (d) => (out.stdout += d));
  child.stderr.on('data', (d) => (out.stderr += d));
  const exit = new Promise<number | null>((resolve) => child.on('exit', resolve));
  return { child, out, exit };
}

/** `regional demo` measuring, with a cluster directory and a results directory of its own. */
function measure(args: string[]) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'regional-demo-cluster-'));
  const results = mkdtempSync(path.join(os.tmpdir(), 'regional-demo-results-'));
  return { dir, results, ...regional(['demo', '--dir', dir, '--results', results, ...args]) };
}

/** Processes of the cluster in `dir`: its servers (by command line) and app instances (by environment). */
function processesIn(dir: string): string[] {
  const lines = execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' }).split('\n');
  return lines.filter((line) => {
    if (line.includes(dir)) return true;
    if (!line.includes('examples/forum/server.ts')) return false;
    try {
      const pid = line.trim().split(/\s+/)[0];
      return readFileSync(`/proc/${pid}/environ`, 'utf8')
        .split('\0')
        .includes(`REGIONAL_CLUSTER_DIR=${dir}`);
    } catch {
      return false;
    }
  });
}

/** The demo's workload processes (one runs per deployment while it is measured). */
function workloadProcesses(): string[] {
  return execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' })
    .split('\n')
    .filter((line) => line.includes('workload-process.ts'));
}

describe('regional demo (npm start)', () => {
  it('--serve prints one line of JSON naming each region entry URL and the dashboard, serves the forum there, and Ctrl-C cleans up', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'regional-demo-serve-'));
    const { child, out, exit } = regional(['demo', '--serve', '--dir', dir]);
    while (!out.stdout.includes('\n')) {
      if (child.exitCode !== null) throw new Error(`exited early: ${out.stderr}`);
      await sleep(100);
    }
    const { regions, dashboard } = JSON.parse(out.stdout) as {
      regions: Record<string, string>;
      dashboard: string;
    };
    expect(Object.keys(regions)).toEqual(['iad', 'cdg', 'syd']);
    // The local dashboard (dashboard.test.ts opens it in a browser).
    const page = await new Client(dashboard).get('/');
    expect(page.status).toBe(200);
    expect(page.text).toMatch(/For local runs only/);
    for (const [region, url] of Object.entries(regions)) {
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const response = await new Client(url).get('/api/topics');
      expect(response.status).toBe(200);
      expect(response.header('x-regional-region')).toBe(region);
    }
    child.kill('SIGINT');
    expect(await exit).toBe(0);
    expect(out.stdout.trim().split('\n')).toHaveLength(1);
    expect(processesIn(dir)).toEqual([]);
  });

  it('Ctrl-C while it measures stops the workload and every server, quietly, and writes no results', async () => {
    const { dir, results, child, out, exit } = measure([
      '--only',
      'regional',
      '--duration',
      '120',
      '--readers',
      '1',
      '--writers',
      '1',
    ]);
    // The progress bar shows once the workload is running.
    while (!/\] \d+% 1\/1 4\. Regional/.test(out.stderr)) {
      if (child.exitCode !== null) throw new Error(`exited early: ${out.stderr}`);
      await sleep(100);
    }
    // Only the demo's own process, as a supervisor's SIGTERM or `kill -INT` would: its
    // workload process must be stopped by the demo, not by the terminal's signal.
    child.kill('SIGINT');
    expect(await exit, out.stderr).toBe(0);
    expect(out.stderr).not.toMatch(/ERR_|Unhandled|Error/);
    expect(processesIn(dir)).toEqual([]);
    expect(workloadProcesses()).toEqual([]);
    expect(readdirSync(results)).toEqual([]);
  });

  it('measures deployments side by side: prints the report and writes demo.json (per deployment and region) and demo.svg', async () => {
    const { dir, results, out, exit } = measure([
      '--only',
      'replicas-no-consistency,regional',
      '--duration',
      '3',
      '--warmup',
      '1',
      '--readers',
      '1',
      '--writers',
      '1',
    ]);
    expect(await exit, out.stderr).toBe(0);
    expect(out.stdout).toMatch(
      /read p50\s+read p99\s+write p50\s+write→read p50\s+stale reads after own write/,
    );
    expect(out.stdout).toMatch(/4\. Regional\n\s+iad\s+[\d.]+ ms/);
    // It ends with what the run showed, in plain words, and no verdicts against thresholds.
    const ending = out.stdout.trimEnd().split('\n').slice(-4);
    expect(ending[0]).toMatch(/^What this run showed /);
    expect(ending[1]).toMatch(/^ {2}• readers in syd: [\d.]+ ms with Regional \(cdg: [\d.]+ ms\)$/);
    expect(ending[2]).toMatch(/: 0 of \d+ with Regional vs \d+ of \d+ with read replicas alone$/);
    expect(ending[3]).toMatch(
      /^ {2}• a post from syd costs \w+ round trips? to iad with Regional \(/,
    );
    expect(out.stdout).not.toMatch(/✓|✗|Goals/);
    expect(out.stderr).toMatch(/\[#+-*\] \d+% 2\/2 4\. Regional/);
    const data = JSON.parse(readFileSync(path.join(results, 'demo.json'), 'utf8')) as {
      goals: { goal: string; met: boolean | null }[];
      rttMs: Record<string, number>;
      deployments: Record<
        string,
        { linkRttP50Ms: Record<string, number>; regions: Record<string, Record<string, number>> }
      >;
    };
    expect(Object.keys(data.deployments)).toEqual(['replicas-no-consistency', 'regional']);
    for (const deployment of Object.values(data.deployments)) {
      expect(Object.keys(deployment.regions)).toEqual(['iad', 'cdg', 'syd']);
      // Round trips measured on the links: never shorter than the links' own delay.
      expect(Object.keys(deployment.linkRttP50Ms)).toEqual(['cdg', 'syd']);
      expect(deployment.linkRttP50Ms.cdg).toBeGreaterThanOrEqual(data.rttMs['iad-cdg'] as number);
      expect(deployment.linkRttP50Ms.syd).toBeGreaterThanOrEqual(data.rttMs['iad-syd'] as number);
      for (const figures of Object.values(deployment.regions)) {
        for (const key of ['readP50Ms', 'readP99Ms', 'writeP50Ms', 'staleReads', 'ownWriteReads']) {
          expect(figures[key], key).toEqual(expect.any(Number));
        }
      }
    }
    // The consistency the demo is about holds in this short run too.
    expect(
      Object.values(data.deployments.regional?.regions ?? {}).every((r) => r.staleReads === 0),
    ).toBe(true);
    // The thresholds are still checked, for the benchmarks: in demo.json.
    expect(data.goals.map((g) => g.goal)).toContain(
      'zero stale reads after own writes, where deployment 3 shows some',
    );
    const svg = readFileSync(path.join(results, 'demo.svg'), 'utf8');
    expect(svg).toMatch(/^<svg /);
    for (const name of ['replicas-no-consistency', 'regional']) {
      expect(svg).toMatch(new RegExp(`<g id="deployment-${name}">[^]*?>\\d+ of \\d+</text>`));
    }
    expect(processesIn(dir)).toEqual([]);
  });
});
