/**
 * The fault suite: one local cluster, and per scenario the app in every region behind the
 * local edge, clients running a workload through it, a fault injected mid-run and healed, and
 * the history judged against the contract's invariants. `npm run test:faults [-- --only
 * none,lag-replay] [--runs N] [--load-clients N]`. Writes `bench/results/faults.json`; exits
 * non-zero when a scenario other than `naive` has a violation (or could not run), or when
 * `naive` shows no read-your-writes violation (a checker that cannot fail proves nothing).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { LocalCluster } from '../../src/testing/cluster.js';
import { INVARIANTS } from './checker.js';
import {
  agent,
  CLIENT_TIMEOUT_MS,
  cleanup,
  closers,
  log,
  runScenario,
  type Suite,
  setLoadLevel,
} from './driver.js';
import { formatResult, merge, type ScenarioResult } from './report.js';
import { SCENARIOS, SUITE_ENV } from './scenarios.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const RTT = { cdg: 60, syd: 100, 'cdg-syd': 140 };

let exiting = false;
function bail(code: number, why: string, error?: unknown): void {
  if (exiting) return;
  exiting = true;
  log(`${why}${error ? `: ${(error as Error)?.stack ?? error}` : ''}; stopping every server`);
  void cleanup().finally(() => process.exit(code));
}
process.on('SIGINT', () => bail(130, 'interrupted'));
process.on('SIGTERM', () => bail(143, 'terminated'));
process.on('uncaughtException', (e) => bail(1, 'the runner crashed', e));
process.on('unhandledRejection', (e) => bail(1, 'the runner crashed', e));

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      only: { type: 'string' },
      runs: { type: 'string', default: '1' },
      'load-clients': { type: 'string' },
    },
  });
  const only = values.only
    ?.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const unknown = only?.filter((name) => !SCENARIOS.some((s) => s.name === name)) ?? [];
  if (unknown.length > 0) {
    log(
      `unknown scenario(s) ${unknown.join(', ')}; known: ${SCENARIOS.map((s) => s.name).join(', ')}`,
    );
    return 2;
  }
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) {
    log(`--runs: a whole number >= 1, got ${values.runs}`);
    return 2;
  }
  if (values['load-clients']) {
    const n = Number(values['load-clients']);
    setLoadLevel(n, `concurrency ${n} clients/region, sequential (--load-clients)`);
  }
  const selected = SCENARIOS.filter((s) => !only || only.includes(s.name));
  const suiteStarted = performance.now();
  log('starting the cluster (iad primary, cdg and syd replicas)');
  const cluster = await LocalCluster.start({
    temporary: true,
    regions: ['iad', 'cdg', 'syd'],
    rttMs: RTT,
    // Few restartpoints: a replica killed after a burst has WAL to redo, with warm buffers lost.
    postgresSettings: { checkpoint_timeout: '1h', max_wal_size: '8GB', shared_buffers: '128MB' },
    onProgress: (m) => log(m),
  });
  closers.add(() => cluster.stop());
  await cluster.query(
    'iad',
    `CREATE TABLE items (id bigserial PRIMARY KEY, client text NOT NULL, value text NOT NULL, region text);
     CREATE TABLE item_audit (value text NOT NULL);
     CREATE TABLE filler (id bigserial PRIMARY KEY, pad text)`,
  );
  const secret = randomBytes(32).toString('hex');
  const password = new URL(cluster.env('iad').DATABASE_URL as string).password;
  const logDir = path.join(os.tmpdir(), `regional-faults-${Date.now()}`);
  mkdirSync(logDir, { recursive: true });
  const suite: Suite = { cluster, secret, secrets: [secret, password], logDir };

  process.stdout.write(
    `Fault suite: iad (primary), cdg, syd; round trips ${JSON.stringify(RTT)} ms; ${Object.entries(
      SUITE_ENV,
    )
      .map(([k, v]) => `${k}=${v}`)
      .join(
        ' ',
      )}; client time-out ${CLIENT_TIMEOUT_MS} ms; replay mode proxy unless the name says otherwise.\n` +
      'errorQuality: answers of the local edge itself (no x-regional-region header) are judged only for stack traces, internal URLs and secrets.\n\n',
  );
  const results: Record<string, ScenarioResult> = {};
  const errors: Record<string, string> = {};
  for (let run = 1; run <= runs; run++) {
    for (const scenario of selected) {
      log(`${scenario.name}${runs > 1 ? ` (run ${run})` : ''}`);
      const result = await runScenario(suite, scenario, run).catch((error: Error) => {
        // A scenario that could not run (apps that did not start, …) fails; the others still run.
        process.stdout.write(`${scenario.name.padEnd(17)} ERROR: ${error.message}\n`);
        errors[scenario.name] = error.message;
        return null;
      });
      if (!result) continue;
      const previous = results[scenario.name];
      results[scenario.name] = previous ? merge(previous, result) : result;
      process.stdout.write(`${formatResult(scenario.name, result)}\n`);
    }
  }
  const totalMs = Math.round(performance.now() - suiteStarted);
  const file = path.join(ROOT, 'bench/results/faults.json');
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(
    file,
    `${JSON.stringify({ durationMs: totalMs, runs, invariants: INVARIANTS, scenarios: results, errors }, null, 2)}\n`,
  );
  const failing = [
    ...Object.entries(results).filter(
      ([, r]) => !r.naive && INVARIANTS.some((i) => r.violations[i] > 0),
    ),
    ...Object.entries(errors),
  ];
  const naive = results.naive;
  const naiveProves = !naive || naive.violations.readYourWrites > 0;
  process.stdout.write(
    `\n${Object.keys(results).length} scenario(s) in ${(totalMs / 1000).toFixed(1)} s; wrote ${path.relative(process.cwd(), file)}; app logs and histories in ${logDir}\n` +
      (failing.length > 0
        ? `violations in: ${failing.map(([n]) => n).join(', ')}\n`
        : 'no violations outside naive\n') +
      (naiveProves
        ? ''
        : 'naive showed no read-your-writes violation: the checker proved nothing\n'),
  );
  return failing.length > 0 || !naiveProves ? 1 : 0;
}

main().then(
  async (code) => {
    await cleanup();
    await agent.close();
    process.exit(code);
  },
  (error) => bail(1, 'the runner failed', error),
);
