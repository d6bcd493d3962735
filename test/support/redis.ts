import { execFileSync } from 'node:child_process';
import { readlinkSync } from 'node:fs';
import { describe } from 'vitest';
import { redisUnavailableReason } from '../../src/testing/redis/binary.js';

/** Why the Redis tests cannot run on this machine, or `null` (always `null` under CI). */
export const redisSkipReason = redisUnavailableReason();

let warned = false;

/**
 * `describe` for tests that need real `redis-server` processes. Where redis-server is missing
 * (and `CI` is not set) the suite is reported as skipped — never as passed — with the install
 * hint in its name; under CI it runs, and fails with that hint. Start clusters in the suite's
 * own `beforeAll`, so a skipped suite starts nothing.
 */
export function describeWithRedis(title: string, fn: () => void): void {
  if (redisSkipReason === null) {
    describe(title, fn);
    return;
  }
  if (!warned) {
    warned = true;
    console.warn(`[regional] Redis tests skipped: ${redisSkipReason}`);
  }
  describe.skip(`${title} — SKIPPED: ${redisSkipReason}`, fn);
}

/** Command lines of the redis-server processes whose data directory is under `dir`. */
export function redisServersIn(dir: string): string[] {
  return execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' })
    .split('\n')
    .filter((line) => {
      if (!line.includes('redis-server')) return false;
      if (line.includes(dir)) return true;
      // Before Redis 7 the title does not show the configuration file; the working directory does.
      try {
        return readlinkSync(`/proc/${line.trim().split(/\s+/)[0]}/cwd`).startsWith(dir);
      } catch {
        return false;
      }
    });
}
