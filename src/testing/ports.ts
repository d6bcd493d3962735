import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import net from 'node:net';

/** Resolves true if `port` can be bound on 127.0.0.1 right now. */
export function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A port the operating system considers free on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** `preferred` if still free (so URLs stay the same across restarts), else a new free port. */
export async function reusePort(preferred: number | undefined): Promise<number> {
  if (preferred && (await isPortFree(preferred))) return preferred;
  return freePort();
}

/** Free ports on 127.0.0.1, each held by a listening socket until `release()`. */
export interface HeldPorts {
  readonly ports: number[];
  release(): Promise<void>;
}

/**
 * `count` distinct free ports on 127.0.0.1, held open until `release()`: while held, nothing
 * else can take them (a proxy this process starts on port 0, say, before the port's future
 * owner has bound it). Release just before starting the processes that will listen there.
 */
export async function holdPorts(count: number): Promise<HeldPorts> {
  const servers: net.Server[] = [];
  const release = () =>
    Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())))).then(
      () => {},
    );
  try {
    for (let i = 0; i < count; i++) {
      const server = net.createServer();
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => resolve());
      });
      servers.push(server);
    }
  } catch (error) {
    await release();
    throw error;
  }
  return { ports: servers.map((s) => (s.address() as net.AddressInfo).port), release };
}

/**
 * The sockets (as `/proc/<pid>/fd` links name them, `socket:[inode]`) listening on TCP `port`
 * at any address, IPv4 or IPv6, in this network namespace; `null` where `/proc/net` cannot be
 * read (not Linux).
 */
export function listeningSockets(port: number): Set<string> | null {
  const sockets = new Set<string>();
  let readable = false;
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    readable = true;
    // "sl local_address rem_address st … uid timeout inode": the port is hex after the ':',
    // state 0A is LISTEN.
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      const local = fields[1];
      if (!local || fields[3] !== '0A') continue;
      if (Number.parseInt(local.slice(local.lastIndexOf(':') + 1), 16) === port)
        sockets.add(`socket:[${fields[9]}]`);
    }
  }
  return readable ? sockets : null;
}

/** Which of `pids` hold one of `sockets` (from {@link listeningSockets}) open. */
export function socketHolders(sockets: ReadonlySet<string>, pids: Iterable<number>): number[] {
  const holders: number[] = [];
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // gone, or not ours to read
    }
    for (const fd of fds) {
      let target: string;
      try {
        target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      if (sockets.has(target)) {
        holders.push(pid);
        break;
      }
    }
  }
  return holders;
}
