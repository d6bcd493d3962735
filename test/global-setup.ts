import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readlinkSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

// This run's own temp folder: test clusters (in os.tmpdir()) land in it, so the check below
// sees only this run's servers, not those of another run on the same machine.
let runDir: string | null = null;

/** The working directory of a process (a Redis server's is its data directory), where /proc tells. */
function cwdOf(pid: string): string {
  try {
    return readlinkSync(`/proc/${pid}/cwd`);
  } catch {
    return '';
  }
}

/** Postgres and Redis servers whose data is in this run's temp folder. */
function leftoverServers(): string[] {
  const dir = runDir;
  if (!dir) return [];
  const out = execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' });
  return out.split('\n').filter((line) => {
    if (line.includes('postgres') && line.includes(` -D ${dir}`)) return true;
    if (!line.includes('redis-server')) return false;
    const pid = line.trim().split(/\s+/)[0] ?? '';
    return line.includes(dir) || cwdOf(pid).startsWith(dir);
  });
}

export function setup(): void {
  runDir = mkdtempSync(path.join(os.tmpdir(), 'regional-test-run-'));
  // Servers run as an unprivileged user when tests run as root: it must reach this folder.
  chmodSync(runDir, 0o755);
  process.env.TMPDIR = runDir;
}

/** After the whole run: no test may leave a server running. */
export async function teardown(): Promise<void> {
  for (let i = 0; i < 100 && leftoverServers().length > 0; i++) await sleep(100);
  const left = leftoverServers();
  if (runDir && left.length === 0) rmSync(runDir, { recursive: true, force: true });
  if (left.length > 0) {
    throw new Error(`The test run left ${left.length} server(s) running:\n${left.join('\n')}`);
  }
}
