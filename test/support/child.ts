import { type ChildProcessByStdio, spawn } from 'node:child_process';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { isAlive } from '../../src/testing/process.js';

const root = path.resolve(import.meta.dirname, '../..');

/**
 * Runs `script` (TypeScript, an ES module, with the repository root as working directory) in a
 * child process; resolves with the child and the first line it prints.
 */
export async function startScript(
  script: string,
): Promise<{ child: ChildProcessByStdio<null, Readable, null>; line: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const line = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes('\n')) resolve(out.trim());
    });
    child.once('exit', (code) => reject(new Error(`child exited ${code} before starting: ${out}`)));
  });
  return { child, line };
}

/** Resolves with the pids still alive once all of `pids` are gone or `timeoutMs` has passed. */
export async function waitGone(pids: readonly number[], timeoutMs = 20_000): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  while (pids.some(isAlive) && Date.now() < deadline) await sleep(50);
  return pids.filter(isAlive);
}
