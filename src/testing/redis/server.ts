import { type ChildProcess, spawn } from 'node:child_process';
import { chownSync, closeSync, openSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isAlive } from '../postgres/server.js';
import type { ServerUser } from '../server-user.js';
import type { Watchdog } from '../watchdog.js';
import type { RedisBinary } from './binary.js';

export interface RedisServerOptions {
  /** A label for messages, e.g. `syd replica`. */
  name: string;
  /** Data directory: holds the configuration file, the pid file, RDB and AOF files. */
  dataDir: string;
  port: number;
  binary: RedisBinary;
  user: ServerUser | null;
  logFile: string;
  /** Settings written to the configuration file at every start (the port is added). */
  settings: () => Record<string, string>;
  startTimeoutMs?: number;
  watchdog?: Watchdog;
}

const PID_FILE = 'redis.pid';
const CONFIG_FILE = 'redis.conf';

/** Quotes a value for redis.conf. */
const quote = (value: string) => `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;

function isRedisProcess(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('redis-server');
  } catch {
    // No /proc (macOS): trust the pid file.
    return isAlive(pid);
  }
}

async function waitGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return true;
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
 * Stops a redis-server by pid: SIGTERM (it flushes its append-only file and exits), then
 * SIGKILL to its process group after a grace period.
 */
export async function stopRedisProcess(pid: number, graceMs = 10_000): Promise<void> {
  signal(pid, 'SIGTERM');
  if (await waitGone(pid, graceMs)) return;
  signal(-pid, 'SIGKILL');
  signal(pid, 'SIGKILL');
  await waitGone(pid, 5_000);
}

/** The pid of a redis-server still running from the pid file in `dataDir`, if any. */
export function leftoverRedisPid(dataDir: string): number | null {
  let pid: number;
  try {
    pid = Number(readFileSync(path.join(dataDir, PID_FILE), 'utf8').trim());
  } catch {
    return null;
  }
  return Number.isInteger(pid) && pid > 0 && isAlive(pid) && isRedisProcess(pid) ? pid : null;
}

function readFrom(file: string, offset: number): string {
  try {
    return readFileSync(file, 'utf8').slice(offset);
  } catch {
    return '';
  }
}

function fileSize(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

/**
 * One redis-server process, in its own process group so it can be stopped cleanly or killed
 * as a whole, started with a configuration file in its data directory (whose path shows in
 * the process title, so leftovers can be found).
 */
export class RedisServer {
  readonly name: string;
  readonly dataDir: string;
  port: number;
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();

  constructor(private readonly options: RedisServerOptions) {
    this.name = options.name;
    this.dataDir = options.dataDir;
    this.port = options.port;
  }

  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  get running(): boolean {
    return this.child !== null;
  }

  /** Starts the server and resolves once it accepts connections. */
  async start(): Promise<void> {
    if (this.child) return;
    const { binary, user, logFile, watchdog } = this.options;
    const configFile = path.join(this.dataDir, CONFIG_FILE);
    const settings: Record<string, string> = {
      ...this.options.settings(),
      port: String(this.port),
      dir: this.dataDir,
      pidfile: path.join(this.dataDir, PID_FILE),
      daemonize: 'no',
      logfile: '',
    };
    // The configuration file's path in the title lets the test run find servers it left behind.
    if (binary.major >= 7) settings['proc-title-template'] = '{title} {listen-addr} {config-file}';
    const lines = Object.entries(settings).map(([name, value]) => `${name} ${quote(value)}`);
    writeFileSync(configFile, `${lines.join('\n')}\n`, { mode: 0o600 });
    if (user) chownSync(configFile, user.uid, user.gid);

    const logStart = fileSize(logFile);
    const log = openSync(logFile, 'a');
    const child = spawn(binary.path, [configFile], {
      cwd: this.dataDir,
      detached: true,
      stdio: ['ignore', log, log],
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' },
      ...(user ? { uid: user.uid, gid: user.gid } : {}),
    });
    closeSync(log);
    this.child = child;
    if (child.pid) watchdog?.track(child.pid, 'SIGTERM');
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
    const timeoutMs = this.options.startTimeoutMs ?? 30_000;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (exitCode !== undefined) {
        throw new Error(
          `${this.name}: redis-server exited during start-up (${exitCode}):\n${this.logSince(logStart)}`,
        );
      }
      if (readFrom(logFile, logStart).includes('Ready to accept connections')) return;
      if (Date.now() > deadline) {
        await this.kill();
        throw new Error(
          `${this.name}: not ready after ${timeoutMs} ms:\n${this.logSince(logStart)}`,
        );
      }
      await sleep(10);
    }
  }

  /** Clean shutdown: the append-only file is flushed, nothing acknowledged is lost. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child?.pid) return;
    await stopRedisProcess(child.pid);
    await this.exited;
  }

  /** SIGKILL, like a crash of its machine. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child?.pid) return;
    signal(-child.pid, 'SIGKILL');
    await this.exited;
  }

  /** For exit handlers: asks the server to shut down without waiting. */
  stopSync(): void {
    if (this.child?.pid) signal(this.child.pid, 'SIGTERM');
  }

  logTail(lines = 15): string {
    return readFrom(this.options.logFile, 0).trimEnd().split('\n').slice(-lines).join('\n');
  }

  private logSince(offset: number): string {
    return readFrom(this.options.logFile, offset).trimEnd().split('\n').slice(-15).join('\n');
  }
}
