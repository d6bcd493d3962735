import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ServerUser } from './server-user.js';
import type { Watchdog } from './watchdog.js';

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Sends `name` to `pid` (a negative pid: its process group); a process already gone is fine. */
export function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

/**
 * The processes whose parent is `pid`, read from `/proc` (Linux); elsewhere none are found. A
 * zombie (exited, not yet reaped) is not counted.
 */
export function childPids(pid: number): number[] {
  return allPids().filter((child) => {
    const stat = procStat(child);
    return stat !== null && stat.ppid === pid && stat.state !== 'Z';
  });
}

/** Every process id in `/proc` (Linux); none elsewhere. */
export function allPids(): number[] {
  try {
    return readdirSync('/proc')
      .filter((entry) => /^\d+$/.test(entry))
      .map(Number);
  } catch {
    return [];
  }
}

/** `pid` and every process below it (children, their children, …), from `/proc` (Linux). */
export function processTree(pid: number): number[] {
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) tree.push(...childPids(tree[i] as number));
  return tree;
}

/** State and parent of a process from `/proc/<pid>/stat`, or `null` if it is gone. */
function procStat(pid: number): { state: string; ppid: number } | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so parse after the last ')'.
  const [state = '', ppid = ''] = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state, ppid: Number(ppid) };
}

/** True while `pid` runs: a zombie whose parent has not reaped it yet counts as gone. */
function running(pid: number): boolean {
  if (!isAlive(pid)) return false;
  const stat = procStat(pid);
  return stat === null ? !existsSync('/proc') : stat.state !== 'Z';
}

/** Waits until none of `pids` runs, or the deadline passes. */
export async function waitAllGone(pids: readonly number[], timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!pids.some(running)) return true;
    if (Date.now() >= deadline) return false;
    await sleep(10);
  }
}

/** Waits until no process of the group led by `pid` is left, or the deadline passes. */
export async function waitGroupGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isAlive(-pid) && !isAlive(pid)) return true;
    await sleep(10);
  }
  return false;
}

/** The last `lines` lines of `file` from byte `from` on, for error messages. */
export function tail(file: string, lines = 15, from = 0): string {
  try {
    return readFileSync(file, 'utf8').slice(from).trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

export interface ServerProcessOptions {
  command: string;
  args: string[];
  cwd?: string;
  env: NodeJS.ProcessEnv;
  /** Output of the server, appended. */
  logFile: string;
  /** Run as this user (when we are root). */
  user: ServerUser | null;
  /** Guards the process against outliving ours; `stopSignal` is its graceful stop. */
  watchdog?: Watchdog | undefined;
  stopSignal: NodeJS.Signals;
}

/** A server process started by {@link spawnServer}. */
export interface ServerProcess {
  child: ChildProcess;
  /** Resolves once it has exited. */
  exited: Promise<void>;
  /** Its exit code or signal once it has exited (an error message if it could not start). */
  exitStatus(): number | string | null | undefined;
}

/**
 * Starts a server in its own process group (so it can be stopped cleanly, or killed as a whole
 * as if its machine had crashed), with its output in `logFile`, tracked by the watchdog until
 * it exits.
 */
export function spawnServer(options: ServerProcessOptions): ServerProcess {
  const { user, watchdog } = options;
  const log = openSync(options.logFile, 'a');
  const child = spawn(options.command, options.args, {
    cwd: options.cwd,
    detached: true,
    stdio: ['ignore', log, log],
    env: options.env,
    ...(user ? { uid: user.uid, gid: user.gid } : {}),
  });
  closeSync(log);
  if (child.pid) watchdog?.track(child.pid, options.stopSignal);
  let status: number | string | null | undefined;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, sig) => {
      status = code ?? sig;
      if (child.pid) watchdog?.untrack(child.pid);
      resolve();
    });
    child.once('error', (error) => {
      status = error.message;
      resolve();
    });
  });
  return { child, exited, exitStatus: () => status };
}

/**
 * A server process of the local cluster (Postgres, Redis): started by a subclass through
 * {@link launch}, stopped cleanly through its {@link terminate}, or killed as a whole.
 */
export abstract class ManagedServer {
  readonly name: string;
  readonly dataDir: string;
  port: number;
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();

  constructor(
    init: { name: string; dataDir: string; port: number },
    private readonly stopSignal: NodeJS.Signals,
  ) {
    this.name = init.name;
    this.dataDir = init.dataDir;
    this.port = init.port;
  }

  /** The server's pid while running. */
  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  get running(): boolean {
    return this.child !== null;
  }

  /** Clean shutdown: nothing acknowledged is lost. */
  async stop(): Promise<void> {
    const pid = this.pid;
    if (!pid) return;
    await this.terminate(pid);
    await this.exited;
  }

  /** SIGKILL to the server and all its processes, like a crash of its machine. */
  async kill(): Promise<void> {
    const pid = this.pid;
    if (!pid) return;
    signal(-pid, 'SIGKILL');
    await this.exited;
    await waitGroupGone(pid, 5_000);
  }

  /** For exit handlers: asks the server to shut down without waiting. */
  stopSync(): void {
    const pid = this.pid;
    if (pid) signal(pid, this.stopSignal);
  }

  /** Starts the process (see {@link spawnServer}); it counts as running until it exits. */
  protected launch(options: Omit<ServerProcessOptions, 'stopSignal'>): ServerProcess {
    const server = spawnServer({ ...options, stopSignal: this.stopSignal });
    const child = server.child;
    this.child = child;
    this.exited = server.exited.then(() => {
      if (this.child === child) this.child = null;
    });
    return server;
  }

  /** Asks the server with this pid to shut down cleanly; resolves once it has. */
  protected abstract terminate(pid: number): Promise<void>;
}
