import { execFileSync } from 'node:child_process';
import { readFileSync, readlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { TEMP_PREFIX } from '../src/testing/cluster.js';

const marker = path.join(os.tmpdir(), TEMP_PREFIX);

/** The working directory of a process (a Redis server's is its data directory), where /proc tells. */
function cwdOf(pid: string): string {
  try {
    return readlinkSync(`/proc/${pid}/cwd`);
  } catch {
    return '';
  }
}

/** The temporary cluster directory a server line belongs to, if any. */
function clusterDir(line: string): string | null {
  const escaped = marker.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const pattern = new RegExp(`(${escaped}[^/\\s]+)`);
  if (line.includes('postgres') && line.includes(` -D ${marker}`))
    return pattern.exec(line)?.[1] ?? null;
  if (!line.includes('redis-server')) return null;
  // Redis 7 shows its configuration file (in the data directory) in its title; any version
  // runs in its data directory.
  const pid = line.trim().split(/\s+/)[0] ?? '';
  return pattern.exec(line)?.[1] ?? pattern.exec(cwdOf(pid))?.[1] ?? null;
}

/** True if the process that started the cluster in `dir` still runs (its servers are in use). */
function ownerAlive(dir: string): boolean {
  try {
    const pid = Number(readFileSync(path.join(dir, 'owner.pid'), 'utf8'));
    if (!Number.isInteger(pid) || pid <= 0) return false;
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Postgres and Redis servers of temporary test clusters whose owner is gone. Clusters whose
 * owner still runs belong to another test run on this machine (or are still stopping).
 */
function leftoverServers(): string[] {
  const out = execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' });
  return out.split('\n').filter((line) => {
    const dir = clusterDir(line);
    return dir !== null && !ownerAlive(dir);
  });
}

/** After the whole run: no test may leave a server running. */
export async function teardown(): Promise<void> {
  for (let i = 0; i < 100 && leftoverServers().length > 0; i++) await sleep(100);
  const left = leftoverServers();
  if (left.length > 0) {
    throw new Error(
      `The test run left ${left.length} server(s) running (Postgres or Redis):\n${left.join('\n')}`,
    );
  }
}
