import { chownSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isAlive, ManagedServer, signal, tail, waitGroupGone } from '../process.js';
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

/**
 * Stops a redis-server by pid: SIGTERM (it flushes its append-only file and exits), then
 * SIGKILL to its process group after a grace period.
 */
export async function stopRedisProcess(pid: number, graceMs = 10_000): Promise<void> {
  signal(pid, 'SIGTERM');
  if (await waitGroupGone(pid, graceMs)) return;
  signal(-pid, 'SIGKILL');
  signal(pid, 'SIGKILL');
  await waitGroupGone(pid, 5_000);
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
export class RedisServer extends ManagedServer {
  constructor(private readonly options: RedisServerOptions) {
    super(options, 'SIGTERM');
  }

  /** Starts the server and resolves once it accepts connections. */
  async start(): Promise<void> {
    if (this.running) return;
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
    const server = this.launch({
      command: binary.path,
      args: [configFile],
      cwd: this.dataDir,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' },
      logFile,
      user,
      watchdog,
    });
    const timeoutMs = this.options.startTimeoutMs ?? 30_000;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const exitCode = server.exitStatus();
      if (exitCode !== undefined) {
        throw new Error(
          `${this.name}: redis-server exited during start-up (${exitCode}):\n${tail(logFile, 15, logStart)}`,
        );
      }
      if (tail(logFile, 1_000, logStart).includes('Ready to accept connections')) return;
      if (Date.now() > deadline) {
        await this.kill();
        throw new Error(
          `${this.name}: not ready after ${timeoutMs} ms:\n${tail(logFile, 15, logStart)}`,
        );
      }
      await sleep(10);
    }
  }

  /** Clean shutdown: the append-only file is flushed, nothing acknowledged is lost. */
  protected terminate(pid: number): Promise<void> {
    return stopRedisProcess(pid);
  }

  logTail(lines = 15): string {
    return tail(this.options.logFile, lines);
  }
}
