import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
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

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function tail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Waits until no process of the group led by `pid` is left, or the deadline passes. */
async function waitGroupGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isAlive(-pid) && !isAlive(pid)) return true;
    await sleep(10);
  }
  return false;
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

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
  signal(-pid, 'SIGKILL');
  signal(pid, 'SIGKILL');
  await waitGroupGone(pid, 5_000);
}

/**
 * One Postgres server process, started directly (not through `pg_ctl`) in its own process
 * group so it can be stopped cleanly, or killed as a whole as if its machine had crashed.
 */
export class PostgresServer {
  readonly name: string;
  readonly dataDir: string;
  port: number;
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();

  constructor(private readonly options: PostgresServerOptions) {
    this.name = options.name;
    this.dataDir = options.dataDir;
    this.port = options.port;
  }

  /** The postmaster's pid while running. */
  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  get running(): boolean {
    return this.child !== null;
  }

  /** Starts the server and resolves once it accepts connections (`ready` or `standby`). */
  async start(): Promise<void> {
    if (this.child) return;
    const { binaries, user, logFile } = this.options;
    const args = ['-D', this.dataDir, '-p', String(this.port)];
    for (const [name, value] of Object.entries(this.options.settings()))
      args.push('-c', `${name}=${value}`);
    const log = openSync(logFile, 'a');
    const child = spawn(binaries.postgres, args, {
      detached: true,
      stdio: ['ignore', log, log],
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C', TZ: 'UTC' },
      ...(user ? { uid: user.uid, gid: user.gid } : {}),
    });
    closeSync(log);
    this.child = child;
    const { watchdog } = this.options;
    if (child.pid) watchdog?.track(child.pid, 'SIGINT');
    let exitCode: number | string | null | undefined;
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, sig) => {
        exitCode = code ?? sig;
        if (child.pid) watchdog?.untrack(child.pid);
        if (this.child === child) this.child = null;
        resolve();
      });
      child.once('error', (error) => {
        exitCode = error.message;
        if (this.child === child) this.child = null;
        resolve();
      });
    });
    const deadline = Date.now() + (this.options.startTimeoutMs ?? 60_000);
    for (;;) {
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

  /** Clean (fast) shutdown: sessions are ended, everything committed is kept. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child?.pid) return;
    await stopPostmaster(child.pid);
    await this.exited;
  }

  /** SIGKILL to the postmaster and all its processes, like a crash of its machine. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child?.pid) return;
    signal(-child.pid, 'SIGKILL');
    await this.exited;
    await waitGroupGone(child.pid, 5_000);
  }

  /** For exit handlers: asks the server to shut down without waiting. */
  stopSync(): void {
    if (this.child?.pid) signal(this.child.pid, 'SIGINT');
  }

  logTail(lines?: number): string {
    return tail(this.options.logFile, lines);
  }
}
