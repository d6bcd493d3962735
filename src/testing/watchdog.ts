import { type ChildProcess, spawn } from 'node:child_process';

// Runs as a separate, detached process. It learns the pids to guard from its stdin; when its
// stdin closes (which happens however the parent dies, even by SIGKILL) it stops them all.
const WATCHDOG_SOURCE = `
const guarded = new Map();
let buffer = '';
const alive = (pid) => { try { process.kill(pid, 0); return true; } catch (e) { return e.code === 'EPERM'; } };
const send = (pid, sig) => { try { process.kill(pid, sig); } catch {} };
process.on('SIGINT', () => {});
process.on('SIGHUP', () => {});
process.stdin.setEncoding('utf8');
process.stdin.on('data', (data) => {
  buffer += data;
  for (let i = buffer.indexOf('\\n'); i >= 0; i = buffer.indexOf('\\n')) {
    const [op, pid, sig] = buffer.slice(0, i).split(' ');
    buffer = buffer.slice(i + 1);
    if (op === 'add') guarded.set(Number(pid), sig); else guarded.delete(Number(pid));
  }
});
let stopping = false;
const stopAll = () => {
  if (stopping) return;
  stopping = true;
  for (const [pid, sig] of guarded) send(pid, sig);
  const started = Date.now();
  const timer = setInterval(() => {
    const left = [...guarded.keys()].filter((pid) => alive(pid) || alive(-pid));
    if (left.length === 0 || Date.now() - started > 15000) {
      for (const pid of left) { send(-pid, 'SIGKILL'); send(pid, 'SIGKILL'); }
      clearInterval(timer);
      process.exit(0);
    }
  }, 50);
};
process.stdin.on('end', stopAll);
process.stdin.on('error', stopAll);
`;

/**
 * Makes sure server processes never outlive the process that started them: a tiny detached
 * process watches this one and stops every tracked process group when it goes away, even
 * after a SIGKILL that leaves no chance to clean up.
 *
 * @example
 * const watchdog = new Watchdog();
 * watchdog.track(server.pid, 'SIGINT');
 * // ... later, after stopping the server ourselves:
 * watchdog.untrack(server.pid);
 */
export class Watchdog {
  private child: ChildProcess | null = null;
  private readonly tracked = new Set<number>();

  private ensure(): ChildProcess {
    if (this.child) return this.child;
    const child = spawn(process.execPath, ['-e', WATCHDOG_SOURCE], {
      detached: true,
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    child.unref();
    // Our end of the pipe must not keep this process alive.
    (child.stdin as unknown as { unref?: () => void }).unref?.();
    child.stdin?.on('error', () => {});
    this.child = child;
    return child;
  }

  /** Guards the process group led by `pid`; `signal` is its graceful stop signal. */
  track(pid: number, signal: NodeJS.Signals = 'SIGINT'): void {
    this.tracked.add(pid);
    this.ensure().stdin?.write(`add ${pid} ${signal}\n`);
  }

  untrack(pid: number): void {
    if (!this.tracked.delete(pid)) return;
    this.child?.stdin?.write(`remove ${pid}\n`);
  }

  /** Ends the watchdog once nothing is tracked any more. */
  close(): void {
    if (this.tracked.size > 0 || !this.child) return;
    this.child.stdin?.end();
    this.child = null;
  }
}
