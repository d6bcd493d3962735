import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ReplayMode } from '../http/settings.js';
import type { LocalCluster } from '../testing/cluster.js';
import { holdPorts, isPortFree, listeningSockets, socketHolders } from '../testing/ports.js';
import { allPids, processTree, signal, waitGroupGone } from '../testing/process.js';
import { Watchdog } from '../testing/watchdog.js';

export interface LocalAppsOptions {
  /**
   * The shell command that starts one app instance; it, or a process it starts, must listen on
   * `PORT` (a port a container runtime publishes for it is taken for another process's).
   */
  command: string;
  /** The cluster whose regions the instances run in (environment, and links between regions). */
  cluster: LocalCluster;
  /** Shared by every instance (`REGIONAL_SECRET`). Default: the environment's, else a random one. */
  secret?: string;
  /** `REGIONAL_REPLAY_MODE` of the instances. Default: the environment's, else `fly-replay`. */
  mode?: ReplayMode;
  /** Base environment. Default `process.env`. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Receives each line an instance prints (stdout and stderr). */
  onOutput?: (region: string, line: string) => void;
  /** How long an instance may take to listen. Default 30 s. */
  readyTimeoutMs?: number;
  /** Working directory of the instances. Default: this process's. */
  cwd?: string;
  /** Regions that get an instance (default: every region of the cluster; the primary's is required). */
  regions?: readonly string[];
  /**
   * Ports of some regions' instances, e.g. `{ iad: 3001 }`; the others get free ones. Start
   * fails, naming the region, if another process listens on one.
   */
  ports?: Readonly<Record<string, number>>;
  /** Extra environment of one region's instance, applied last; `undefined` removes a variable. */
  regionEnv?: (region: string) => Readonly<Record<string, string | undefined>>;
  /**
   * Called when an instance that was listening exits without `stop()`, `kill()` or
   * `restart()` asking it to (a crash); the same record is kept in {@link LocalApps.exits}.
   */
  onExit?: (exit: AppExit) => void;
}

/** An instance that exited on its own after it had started listening. */
export interface AppExit {
  region: string;
  /** Exit code, or `null` when a signal ended it. */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** When it exited (`Date.now()`). */
  at: number;
  /** Its last lines of output (stdout and stderr), oldest first. */
  lastOutput: string;
}

/** Variables `LocalApps` sets per instance; the same in the base environment are dropped. */
const REGION_VARIABLES = new Set([
  'PRIMARY_REGION',
  'REGION',
  'FLY_REGION',
  'DATABASE_URL',
  'DATABASE_REPLICA_URL',
  'PORT',
  'REGIONAL_PRIMARY_URL',
]);

interface Instance {
  region: string;
  port: number;
  env: Record<string, string>;
  child: ChildProcess;
  output: string[];
  /** It listened once: from then on, an exit nobody asked for is a crash. */
  listened: boolean;
  /** `stop()`, `kill()` or `restart()` asked it to exit. */
  exitExpected: boolean;
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * App instances for local runs: one process per region of a {@link LocalCluster}, started
 * with that region's environment — `PRIMARY_REGION`, `REGION`, `DATABASE_URL`,
 * `DATABASE_REPLICA_URL`, `PORT`, `REGIONAL_SECRET`, `REGIONAL_PRIMARY_URL` (the primary
 * region's instance, through the latency link) and `REGIONAL_REPLAY_MODE`. Each runs in its
 * own process group, which a watchdog stops even if this process dies without cleaning up.
 *
 * An instance that exits on its own once it listens (a crash) is recorded in {@link exits} and
 * reported to `onExit`; {@link kill} and {@link restart} make crashes on purpose.
 *
 * @example
 * const apps = await LocalApps.start({ command: 'node server.js', cluster });
 * const edge = await LocalEdge.start({ apps: apps.edgeApps(), links: cluster });
 * await apps.kill('iad'); // SIGKILL, like a crashed machine
 * await apps.restart('iad'); // same environment and port: the edge finds it again
 * apps.exits(); // [] — unless an instance crashed by itself
 * await edge.close();
 * await apps.stop();
 */
export class LocalApps {
  private readonly watchdog = new Watchdog();
  private readonly instances: Instance[] = [];
  /** The latency links made for the instances' calls to the primary's instance (by port). */
  private readonly links: number[] = [];
  private readonly crashes: AppExit[] = [];
  private stopped = false;

  private constructor(private readonly options: LocalAppsOptions) {}

  static async start(options: LocalAppsOptions): Promise<LocalApps> {
    if (!options.command.trim())
      throw new TypeError('command: give the command that starts the app, e.g. "node server.js"');
    const apps = new LocalApps(options);
    try {
      await apps.launch();
    } catch (error) {
      await apps.stop();
      throw error;
    }
    return apps;
  }

  /** Each region's instance port, as the edge takes it. */
  edgeApps(): Record<string, { port: number }> {
    return Object.fromEntries(this.instances.map((i) => [i.region, { port: i.port }]));
  }

  /** Each region's instance: port and process id. */
  list(): { region: string; port: number; pid: number }[] {
    return this.instances.map((i) => ({ region: i.region, port: i.port, pid: i.child.pid ?? 0 }));
  }

  /** The instances that exited on their own after they listened, in order (see `onExit`). */
  exits(): AppExit[] {
    return this.crashes.map((exit) => ({ ...exit }));
  }

  /**
   * Sends `signal` to the process group of `region`'s instance and resolves once the group is
   * gone (SIGKILL after 5 s if another signal did not end it). Not recorded as a crash. The
   * instance stays down until {@link restart}; the edge gets connection errors meanwhile.
   *
   * @example
   * await apps.kill('iad'); // as if its machine died
   * await apps.kill('syd', 'SIGTERM'); // a graceful stop of one instance
   */
  async kill(region: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await this.end(this.instance(region), signal);
  }

  /**
   * Starts `region`'s instance again with the same environment and port (stopping it first,
   * with SIGTERM, if it runs); resolves once it listens. Its paths (edge, links) stay valid.
   *
   * @example
   * await apps.kill('iad');
   * await apps.restart('iad');
   */
  async restart(region: string): Promise<void> {
    const old = this.instance(region);
    await this.end(old, 'SIGTERM');
    if (this.stopped) throw new Error(`restart(${region}): the instances were stopped`);
    const fresh = this.spawnInstance(region, old.port, old.env);
    this.instances[this.instances.indexOf(old)] = fresh;
    await this.ready(fresh);
  }

  /** Stops every instance (SIGTERM to its process group, SIGKILL after 5 s). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.stopInstances();
    this.watchdog.close();
  }

  /** Stops the instances, then closes their links (they hold connections through them). */
  private async stopInstances(): Promise<void> {
    const instances = this.instances.splice(0);
    await Promise.all(instances.map((instance) => this.end(instance, 'SIGTERM')));
    const links = this.links.splice(0);
    await Promise.all(links.map((port) => this.options.cluster.unroute(port)));
  }

  private instance(region: string): Instance {
    const instance = this.instances.find((i) => i.region === region);
    if (!instance) {
      const regions = this.instances.map((i) => i.region).join(', ');
      throw new Error(`No instance runs in "${region}" (instances: ${regions || 'none'})`);
    }
    return instance;
  }

  /** Ends an instance's process group with `how` (SIGKILL after 5 s); an exit asked for. */
  private async end(instance: Instance, how: NodeJS.Signals): Promise<void> {
    instance.exitExpected = true;
    const pid = instance.child.pid;
    if (!pid) return;
    signal(-pid, how);
    if (!(await waitGroupGone(pid, how === 'SIGKILL' ? 10_000 : 5_000))) signal(-pid, 'SIGKILL');
    this.watchdog.untrack(-pid);
  }

  private async launch(): Promise<void> {
    const { cluster } = this.options;
    const regions = this.options.regions ?? cluster.topology.regions;
    if (!regions.includes(cluster.primaryRegion)) {
      throw new TypeError(
        `regions: the primary region (${cluster.primaryRegion}) needs an instance too`,
      );
    }
    for (const region of regions) {
      if (!cluster.topology.regions.includes(region))
        throw new TypeError(`regions: "${region}" is not a region of the cluster`);
    }
    const fixed = this.options.ports ?? {};
    for (const [region, port] of Object.entries(fixed)) {
      if (!regions.includes(region))
        throw new TypeError(
          `ports.${region}: no instance runs there (regions: ${regions.join(', ')})`,
        );
      if (!Number.isInteger(port) || port <= 0 || port > 65535)
        throw new TypeError(`ports.${region}: ${port} is not a TCP port (1 to 65535)`);
    }
    const base = this.options.env ?? process.env;
    const secret = this.options.secret ?? base.REGIONAL_SECRET ?? randomBytes(32).toString('hex');
    // A free port can still be taken by another process before the instance binds it; the
    // instance then fails to start and another listener answers in its place. Detected in
    // `ready`, and the instances start again on new ports.
    for (let attempt = 1; ; attempt++) {
      try {
        await this.launchOnce(regions, fixed, base, secret);
        return;
      } catch (error) {
        if (!(error instanceof PortTakenError) || error.chosen || attempt >= PORT_ATTEMPTS)
          throw error;
        const line = `[regional] ${error.message} Starting again on new ports.`;
        if (this.options.onOutput) this.options.onOutput(error.region, line);
        else console.warn(line);
        await this.stopInstances();
      }
    }
  }

  private async launchOnce(
    regions: readonly string[],
    fixed: Readonly<Record<string, number>>,
    base: Readonly<Record<string, string | undefined>>,
    secret: string,
  ): Promise<void> {
    const { cluster } = this.options;
    for (const [region, port] of Object.entries(fixed)) {
      if (!(await isPortFree(port)))
        throw new PortTakenError(region, port, true, foreignListeners(port, []) ?? []);
    }
    const free = regions.filter((region) => fixed[region] === undefined);
    const held = await holdPorts(free.length);
    const ports = new Map<string, number>([
      ...Object.entries(fixed),
      ...free.map((region, i) => [region, held.ports[i] as number] as const),
    ]);
    const primaryPort = ports.get(cluster.primaryRegion) as number;
    const toPrimary = new Map<string, number>();
    try {
      // Links listen on ports of their own: made while the instances' ports are held, so that
      // none of them takes one.
      for (const region of regions) {
        const link = await cluster.route({
          from: region,
          to: cluster.primaryRegion,
          port: primaryPort,
          name: 'app',
        });
        toPrimary.set(region, link);
        // Within the primary region there is no link: the port is the instance's own.
        if (link !== primaryPort) this.links.push(link);
      }
    } finally {
      await held.release();
    }
    for (const region of regions) {
      const port = ports.get(region) as number;
      const env: Record<string, string> = {};
      for (const [key, value] of Object.entries(base)) {
        // This shell's own region settings would contradict the instance's.
        if (value !== undefined && !REGION_VARIABLES.has(key)) env[key] = value;
      }
      Object.assign(env, cluster.env(region), {
        PORT: String(port),
        REGIONAL_SECRET: secret,
        REGIONAL_PRIMARY_URL: `http://127.0.0.1:${toPrimary.get(region)}`,
        REGIONAL_REPLAY_MODE: this.options.mode ?? base.REGIONAL_REPLAY_MODE ?? 'fly-replay',
        // Which local cluster the instance belongs to (for people and tools looking at processes).
        REGIONAL_CLUSTER_DIR: cluster.dir,
      });
      for (const [key, value] of Object.entries(this.options.regionEnv?.(region) ?? {})) {
        if (value === undefined) delete env[key];
        else env[key] = value;
      }
      this.instances.push(this.spawnInstance(region, port, env));
    }
    // Every instance settles (ready or failed) before a retry stops them all.
    const results = await Promise.allSettled(this.instances.map((i) => this.ready(i)));
    const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as Error] : []));
    const first = failures.find((e) => !(e instanceof PortTakenError)) ?? failures[0];
    if (first) throw first;
  }

  /** Starts one instance of `region` (not waiting for it to listen). */
  private spawnInstance(region: string, port: number, env: Record<string, string>): Instance {
    // Its own process group, so that stopping it stops whatever the command started.
    const child = spawn('/bin/sh', ['-c', this.options.command], {
      cwd: this.options.cwd,
      env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const instance: Instance = {
      region,
      port,
      env,
      child,
      output: [],
      listened: false,
      exitExpected: false,
    };
    if (child.pid) this.watchdog.track(-child.pid, 'SIGTERM');
    for (const stream of [child.stdout, child.stderr]) {
      let buffer = '';
      stream?.setEncoding('utf8');
      stream?.on('data', (data: string) => {
        buffer += data;
        for (let i = buffer.indexOf('\n'); i >= 0; i = buffer.indexOf('\n')) {
          const line = buffer.slice(0, i);
          buffer = buffer.slice(i + 1);
          instance.output.push(line);
          if (instance.output.length > 20) instance.output.shift();
          this.options.onOutput?.(region, line);
        }
      });
    }
    // 'close' comes after the output is read to its end: the last lines belong in the record.
    child.once('close', (code, sig) => {
      if (!instance.listened || instance.exitExpected) return;
      if (child.pid) this.watchdog.untrack(-child.pid);
      const exit: AppExit = {
        region,
        code,
        signal: sig,
        at: Date.now(),
        lastOutput: instance.output.join('\n'),
      };
      this.crashes.push(exit);
      this.options.onExit?.({ ...exit });
    });
    return instance;
  }

  private async ready(instance: Instance): Promise<void> {
    const deadline = Date.now() + (this.options.readyTimeoutMs ?? 30_000);
    const { child, port, region } = instance;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        const others = foreignListeners(port, []);
        if (others)
          throw new PortTakenError(
            region,
            port,
            this.options.ports?.[region] !== undefined,
            others,
          );
        throw new Error(
          `The app in ${region} exited (${child.exitCode ?? child.signalCode}) before listening on port ${port}. Its last output:\n${instance.output.join('\n') || '(none)'}`,
        );
      }
      if (await accepts(port)) {
        // Something answers on the port: the instance, or whatever took the port before it.
        const others = child.pid ? foreignListeners(port, processTree(child.pid)) : null;
        if (!others) {
          instance.listened = true;
          return;
        }
        throw new PortTakenError(region, port, this.options.ports?.[region] !== undefined, others);
      }
      if (Date.now() > deadline) {
        throw new Error(
          `The app in ${region} did not listen on PORT=${port} within ${this.options.readyTimeoutMs ?? 30_000} ms. Does it read PORT? Its last output:\n${instance.output.join('\n') || '(none)'}`,
        );
      }
      await sleep(50);
    }
  }
}

/** How many times instances start on fresh ports when one of them was taken. */
const PORT_ATTEMPTS = 3;

/**
 * The processes other than `own` listening on `port`, if any listen there and none of `own`
 * does; `null` otherwise, and where `/proc` cannot tell (not Linux).
 */
function foreignListeners(port: number, own: readonly number[]): number[] | null {
  const sockets = listeningSockets(port);
  if (!sockets || sockets.size === 0) return null;
  if (socketHolders(sockets, own).length > 0) return null;
  return socketHolders(sockets, allPids());
}

/** Another process listens on the port an instance was given, so the instance cannot. */
class PortTakenError extends Error {
  constructor(
    readonly region: string,
    readonly port: number,
    /** The port came from the `ports` option (so trying another is not up to us). */
    readonly chosen: boolean,
    holders: readonly number[] = [],
  ) {
    const who =
      holders.length === 0
        ? 'another process'
        : holders
            .map((pid) => (pid === process.pid ? `this process (pid ${pid})` : `pid ${pid}`))
            .join(', ');
    super(
      `The app in ${region} cannot listen on PORT=${port}: ${who} listens there${chosen ? `. Free the port or choose another in ports.${region}.` : '.'}`,
    );
    this.name = 'PortTakenError';
  }
}
