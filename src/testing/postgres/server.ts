import { readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  childPids,
  isAlive,
  ManagedServer,
  signal,
  tail,
  waitAllGone,
  waitGroupGone,
} from '../process.js';
import type { ServerUser } from '../server-user.js';
import type { Watchdog } from '../watchdog.js';
import type { PostgresBinaries } from './binaries.js';

export interface PostgresServerOptions {
  /** A label for messages, e.g. `iad primary`. */
  name: string;
  dataDir: string;
  port: number;
  binaries: PostgresBinaries;
  user: ServerUser | null;
  logFile: string;
  /** Settings passed as `-c name=value`, which override the configuration files. */
  settings: () => Record<string, string>;
  /** How long start-up may take before it is reported as failed. */
  startTimeoutMs?: number;
  /** Guards the process against outliving ours. */
  watchdog?: Watchdog;
}

/** Reads `postmaster.pid`: the running postmaster's pid and status, if the file exists. */
export function readPostmasterPid(dataDir: string): { pid: number; status: string } | null {
  let text: string;
  try {
    text = readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8');
  } catch {
    return null;
  }
  const lines = text.split('\n');
  const pid = Number(lines[0]);
  if (!Number.isInteger(pid) || pid <= 0) return null;
  return { pid, status: (lines[7] ?? '').trim() };
}

export { isAlive };

/**
 * Stops a postmaster by pid: a fast shutdown (SIGINT), then an immediate one (SIGQUIT), then
 * SIGKILL to its whole process group, each after a grace period. Used for our own servers and
 * for leftovers of a crashed run found through `postmaster.pid`.
 */
export async function stopPostmaster(pid: number, graceMs = 10_000): Promise<void> {
  signal(pid, 'SIGINT');
  if (await waitGroupGone(pid, graceMs)) return;
  signal(pid, 'SIGQUIT');
  if (await waitGroupGone(pid, 2_000)) return;
  const children = killChildren(pid);
  signal(-pid, 'SIGKILL');
  signal(pid, 'SIGKILL');
  await waitGroupGone(pid, 5_000);
  await waitAllGone(children, 5_000);
}

/**
 * SIGKILL to every process a postmaster started, and their own children; returns their pids.
 * Postgres makes each child the leader of its own process group, so killing the postmaster's
 * group alone leaves its backends running until they notice, and a start in that moment fails
 * with "pre-existing shared memory block is still in use". The postmaster is stopped first, so
 * it starts nothing between the listing and the kill; the caller kills it next.
 */
function killChildren(postmaster: number): number[] {
  signal(postmaster, 'SIGSTOP');
  const children = childPids(postmaster);
  for (const child of children) {
    signal(-child, 'SIGKILL');
    signal(child, 'SIGKILL');
  }
  return children;
}

/**
 * One Postgres server process, started directly (not through `pg_ctl`) in its own process
 * group so it can be stopped cleanly, or killed as a whole as if its machine had crashed.
 */
export class PostgresServer extends ManagedServer {
  constructor(private readonly options: PostgresServerOptions) {
    super(options, 'SIGINT');
  }

  /** Starts the server and resolves once it accepts connections (`ready` or `standby`). */
  async start(): Promise<void> {
    if (this.running) return;
    const { binaries, user, logFile, watchdog } = this.options;
    const args = ['-D', this.dataDir, '-p', String(this.port)];
    for (const [name, value] of Object.entries(this.options.settings()))
      args.push('-c', `${name}=${value}`);
    const server = this.launch({
      command: binaries.postgres,
      args,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C', TZ: 'UTC' },
      logFile,
      user,
      watchdog,
    });
    const child = server.child;
    const deadline = Date.now() + (this.options.startTimeoutMs ?? 60_000);
    for (;;) {
      const exitCode = server.exitStatus();
      if (exitCode !== undefined) {
        throw new Error(
          `${this.name}: postgres exited during start-up (${exitCode}). Last lines of ${logFile}:\n${tail(logFile)}`,
        );
      }
      const pidFile = readPostmasterPid(this.dataDir);
      if (
        pidFile &&
        pidFile.pid === child.pid &&
        (pidFile.status === 'ready' || pidFile.status === 'standby')
      ) {
        return;
      }
      if (Date.now() > deadline) {
        await this.kill();
        throw new Error(
          `${this.name}: not ready after ${this.options.startTimeoutMs ?? 60_000} ms:\n${tail(logFile)}`,
        );
      }
      await sleep(10);
    }
  }

  /**
   * Kills the server as a crash of its machine would: the postmaster and every process it
   * started, at once (see {@link killChildren}).
   */
  override async kill(): Promise<void> {
    const pid = this.pid;
    if (!pid) return;
    const children = killChildren(pid);
    await super.kill();
    if (!(await waitAllGone(children, 5_000))) {
      throw new Error(`${this.name}: processes ${children.join(', ')} outlived SIGKILL`);
    }
  }

  /** Clean (fast) shutdown: sessions are ended, everything committed is kept. */
  protected terminate(pid: number): Promise<void> {
    return stopPostmaster(pid);
  }

  logTail(lines?: number): string {
    return tail(this.options.logFile, lines);
  }
}
