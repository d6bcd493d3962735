import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LocalCluster } from '../../../src/testing/cluster.js';

/** Most round trips kept per region: bounds memory whatever the run's length. */
const MAX_SAMPLES = 20_000;

/**
 * Measures what one round trip to the primary region costs on the simulated links while the
 * workload runs: a one-byte ping from each region to an echo server in `to`, every
 * `intervalMs`, through the same kind of link the requests cross. The links add their delay
 * with timers, which fire late by up to a millisecond or so (more when the machine is busy),
 * so a round trip costs a little more than the nominal figure; the demo's goals are checked
 * against what it really cost.
 *
 * @example
 * const probe = await LinkProbe.start(cluster, { to: 'iad', from: ['cdg', 'syd'] });
 * probe.measureFrom(performance.now() + warmupMs);
 * const rttP50 = await probe.stop(); // { cdg: 80.9, syd: 201.1 }
 */
export class LinkProbe {
  private readonly samples = new Map<string, number[]>();
  private readonly loops: Promise<void>[] = [];
  private readonly sockets: net.Socket[] = [];
  /** The ping paths made on the links, closed by `stop`. */
  private readonly routes: number[] = [];
  private running = true;
  private from = 0;

  private constructor(
    private readonly cluster: LocalCluster,
    private readonly echo: net.Server,
  ) {}

  static async start(
    cluster: LocalCluster,
    options: { to: string; from: readonly string[]; intervalMs?: number },
  ): Promise<LinkProbe> {
    const echo = net.createServer((socket) => {
      socket.setNoDelay(true);
      socket.on('data', (data) => socket.write(data));
      socket.on('error', () => socket.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      echo.once('error', reject);
      echo.listen(0, '127.0.0.1', resolve);
    });
    const probe = new LinkProbe(cluster, echo);
    const echoPort = (echo.address() as net.AddressInfo).port;
    for (const region of options.from) {
      const port = await cluster.route({
        from: region,
        to: options.to,
        port: echoPort,
        name: 'ping',
      });
      probe.routes.push(port);
      const socket = net.connect({ host: '127.0.0.1', port, noDelay: true });
      socket.on('error', () => {}); // ends the loop below (no answer), reported as missing figures
      probe.sockets.push(socket);
      probe.samples.set(region, []);
      probe.loops.push(probe.pingLoop(socket, region, options.intervalMs ?? 50));
    }
    return probe;
  }

  /** Keeps only round trips that start at or after `time` (`performance.now()` clock). */
  measureFrom(time: number): void {
    this.from = time;
  }

  /** Stops pinging; resolves with the median round trip per region (ms, to 0.01). */
  async stop(): Promise<Record<string, number>> {
    this.running = false;
    for (const socket of this.sockets) socket.destroy();
    await Promise.all(this.loops);
    await new Promise<void>((resolve) => this.echo.close(() => resolve()));
    await Promise.all(this.routes.splice(0).map((port) => this.cluster.unroute(port)));
    const medians: Record<string, number> = {};
    for (const [region, values] of this.samples) {
      if (values.length === 0) continue;
      const sorted = [...values].sort((a, b) => a - b);
      medians[region] =
        Math.round((sorted[Math.floor((sorted.length - 1) / 2)] as number) * 100) / 100;
    }
    return medians;
  }

  private async pingLoop(socket: net.Socket, region: string, intervalMs: number): Promise<void> {
    const values = this.samples.get(region) as number[];
    let first = true;
    while (this.running && values.length < MAX_SAMPLES && !socket.destroyed) {
      const started = performance.now();
      const answered = await new Promise<boolean>((resolve) => {
        const done = (ok: boolean) => {
          socket.off('data', onData);
          socket.off('close', onClose);
          resolve(ok);
        };
        const onData = () => done(true);
        const onClose = () => done(false);
        socket.once('data', onData);
        socket.once('close', onClose);
        socket.write(Buffer.of(1));
      });
      if (!answered) return;
      // The first one also pays for the emulated TCP handshake.
      if (!first && started >= this.from) values.push(performance.now() - started);
      first = false;
      await sleep(intervalMs);
    }
  }
}
