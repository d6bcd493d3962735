import net from 'node:net';
import { performance } from 'node:perf_hooks';

/** How a cut link treats traffic: `hang` holds it (a partition), `refuse` resets and refuses it. */
export type CutMode = 'hang' | 'refuse';

/** Counters of one proxy since it started (or since {@link LatencyProxy.resetStats}). */
export interface ProxyStats {
  /** Connections accepted. */
  connections: number;
  /** Connections open now. */
  openConnections: number;
  /** Bytes sent from the client side towards the target. */
  bytesForward: number;
  /** Bytes sent from the target back to the client side. */
  bytesBackward: number;
  /**
   * Request flights: times the client side started sending after having received something
   * (or for the first time on a connection). For request/response protocols this is the
   * number of round trips that crossed the link.
   */
  roundTrips: number;
}

export interface LatencyProxyOptions {
  /** A name for messages and stats, e.g. `syd->iad postgres`. */
  name: string;
  targetHost?: string;
  targetPort: number;
  /** Delay added to each direction, in milliseconds. */
  oneWayMs: number;
  /** Port to listen on; 0 (the default) picks a free one. */
  port?: number;
}

// Pause reading from a side once this much is waiting to be delivered, so a fast sender
// behind a slow link cannot grow memory without bound.
const HIGH_WATER_BYTES = 8 * 1024 * 1024;
const LOW_WATER_BYTES = 1024 * 1024;

type Delivery = { at: number; chunk: Buffer | null };

/**
 * One direction of a proxied connection: every chunk is delivered `oneWayMs` after it
 * arrived, in order, never earlier. A held pipe (hang cut) keeps chunks until released.
 */
class DelayedPipe {
  private readonly queue: Delivery[] = [];
  private head = 0;
  private queuedBytes = 0;
  private lastAt = 0;
  private timer: NodeJS.Timeout | null = null;
  private paused = false;

  constructor(
    private readonly from: () => net.Socket | null,
    private readonly to: () => net.Socket | null,
    private readonly proxy: LatencyProxy,
  ) {}

  push(chunk: Buffer | null, notBefore: number): void {
    const now = performance.now();
    const at = Math.max(now + this.proxy.oneWayMs, notBefore, this.lastAt);
    this.lastAt = at;
    this.queue.push({ at, chunk });
    if (chunk) {
      this.queuedBytes += chunk.length;
      if (this.queuedBytes > HIGH_WATER_BYTES && !this.paused) {
        this.paused = true;
        this.from()?.pause();
      }
    }
    this.schedule();
  }

  /** Delivers what is due and re-arms the timer for the rest. */
  schedule(): void {
    if (this.timer || this.proxy.held) return;
    const target = this.to();
    if (!target) return;
    const now = performance.now();
    while (this.head < this.queue.length) {
      const next = this.queue[this.head] as Delivery;
      if (next.at > now) {
        this.timer = setTimeout(
          () => {
            this.timer = null;
            this.schedule();
          },
          Math.max(1, Math.ceil(next.at - now)),
        );
        return;
      }
      this.head++;
      if (next.chunk === null) {
        target.end();
      } else {
        this.queuedBytes -= next.chunk.length;
        target.write(next.chunk);
      }
    }
    this.queue.length = 0;
    this.head = 0;
    if (this.paused && this.queuedBytes < LOW_WATER_BYTES) {
      this.paused = false;
      this.from()?.resume();
    }
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.queue.length = 0;
    this.head = 0;
  }
}

const live = (socket: net.Socket | null): net.Socket | null =>
  socket && !socket.destroyed ? socket : null;

class ProxiedConnection {
  readonly forward: DelayedPipe;
  readonly backward: DelayedPipe;
  upstream: net.Socket | null = null;
  private lastDirection: 'forward' | 'backward' | null = null;
  private forwardEnded = false;
  private backwardEnded = false;
  private finished = false;
  /** Earliest time data may leave the client: a real TCP handshake costs one round trip. */
  private readonly sendableAt: number;

  constructor(
    readonly client: net.Socket,
    private readonly proxy: LatencyProxy,
  ) {
    this.sendableAt = performance.now() + 2 * proxy.oneWayMs;
    this.forward = new DelayedPipe(
      () => live(this.client),
      () => live(this.upstream),
      proxy,
    );
    this.backward = new DelayedPipe(
      () => live(this.upstream),
      () => live(this.client),
      proxy,
    );
    client.setNoDelay(true);
    client.on('data', (chunk: Buffer) => {
      proxy.counters.bytesForward += chunk.length;
      if (this.lastDirection !== 'forward') proxy.counters.roundTrips++;
      this.lastDirection = 'forward';
      this.forward.push(chunk, this.sendableAt + proxy.oneWayMs);
    });
    // A close travels like data: the other side sees it once what was sent before it arrived.
    client.on('end', () => this.endForward());
    client.on('close', () => {
      this.endForward();
      this.finishIfClosed();
    });
    client.on('error', () => {});
    if (!proxy.held) this.connectUpstream();
  }

  connectUpstream(): void {
    if (this.upstream || this.finished) return;
    const upstream = net.connect({
      host: this.proxy.targetHost,
      port: this.proxy.targetPort,
      allowHalfOpen: true,
      noDelay: true,
    });
    this.upstream = upstream;
    upstream.on('data', (chunk: Buffer) => {
      this.proxy.counters.bytesBackward += chunk.length;
      this.lastDirection = 'backward';
      this.backward.push(chunk, this.sendableAt);
    });
    upstream.on('end', () => this.endBackward());
    upstream.on('close', () => {
      this.endBackward();
      this.finishIfClosed();
    });
    upstream.on('error', () => {});
    this.forward.schedule();
  }

  /** Releases held traffic after a hang cut is restored. */
  release(): void {
    this.connectUpstream();
    this.forward.schedule();
    this.backward.schedule();
  }

  /** Closes both sides now; `reset` sends a TCP reset instead of a normal close. */
  destroy(reset = false): void {
    for (const socket of [this.client, this.upstream]) {
      if (!socket) continue;
      if (reset) socket.resetAndDestroy();
      else socket.destroy();
    }
    this.finish();
  }

  private endForward(): void {
    if (this.forwardEnded) return;
    this.forwardEnded = true;
    this.forward.push(null, this.sendableAt + this.proxy.oneWayMs);
  }

  private endBackward(): void {
    if (this.backwardEnded) return;
    this.backwardEnded = true;
    this.backward.push(null, this.sendableAt);
  }

  private finishIfClosed(): void {
    const upstreamGone = this.upstream === null || this.upstream.destroyed;
    if (this.client.destroyed && upstreamGone) this.finish();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.forward.stop();
    this.backward.stop();
    this.proxy.connections.delete(this);
  }
}

/**
 * A TCP proxy on loopback that delays each direction by a configurable one-way time, so
 * two processes on one machine talk as if they were in different regions. It also emulates
 * the round trip a TCP handshake costs, counts round trips, and can be cut and restored.
 *
 * @example
 * const proxy = new LatencyProxy({ name: 'syd->iad', targetPort: 5432, oneWayMs: 100 });
 * const port = await proxy.listen();
 * // connect to 127.0.0.1:port: every request/response pays a 200 ms round trip
 * proxy.cut('refuse');
 * proxy.restore();
 * await proxy.close();
 */
export class LatencyProxy {
  readonly name: string;
  readonly targetHost: string;
  oneWayMs: number;
  /** True while a `hang` cut holds all traffic. */
  held = false;
  private refusing = false;
  #targetPort: number;
  private listenPort: number;
  private server: net.Server | null = null;
  readonly connections = new Set<ProxiedConnection>();
  readonly counters: Omit<ProxyStats, 'openConnections'> = {
    connections: 0,
    bytesForward: 0,
    bytesBackward: 0,
    roundTrips: 0,
  };

  constructor(options: LatencyProxyOptions) {
    if (!(options.oneWayMs >= 0)) {
      throw new RangeError(
        `${options.name}: oneWayMs must be a number >= 0, got ${options.oneWayMs}`,
      );
    }
    this.name = options.name;
    this.targetHost = options.targetHost ?? '127.0.0.1';
    this.#targetPort = options.targetPort;
    this.oneWayMs = options.oneWayMs;
    this.listenPort = options.port ?? 0;
  }

  /** Where connections go (see {@link retarget}). */
  get targetPort(): number {
    return this.#targetPort;
  }

  /**
   * Sends connections from now on to `port` (another server on the target host) and resets
   * the open ones: to a client, the server at this address went away and came back as another
   * process (say, a replica restored from an older backup).
   */
  retarget(port: number): void {
    this.#targetPort = port;
    this.resetConnections();
  }

  /** The port clients connect to. */
  get port(): number {
    return this.listenPort;
  }

  /** Starts listening on 127.0.0.1 and resolves with the port. */
  async listen(): Promise<number> {
    const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
      this.counters.connections++;
      this.connections.add(new ProxiedConnection(socket, this));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.listenPort, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    this.listenPort = (server.address() as net.AddressInfo).port;
    return this.listenPort;
  }

  /** Changes the one-way delay for traffic from now on (traffic in flight keeps its time). */
  setDelay(oneWayMs: number): void {
    if (!(oneWayMs >= 0)) throw new RangeError(`${this.name}: delay must be >= 0, got ${oneWayMs}`);
    this.oneWayMs = oneWayMs;
  }

  /**
   * Cuts the link. `hang`: connections stay open but nothing crosses (new ones are accepted
   * and hang) until {@link restore}, when held traffic is delivered. `refuse`: open connections
   * are reset and new ones are refused.
   */
  async cut(mode: CutMode): Promise<void> {
    if (mode === 'hang') {
      this.held = true;
      return;
    }
    if (mode !== 'refuse') throw new TypeError(`cut mode must be 'hang' or 'refuse', got ${mode}`);
    this.refusing = true;
    for (const connection of [...this.connections]) connection.destroy(true);
    await this.closeServer();
  }

  /** Ends a cut: held traffic flows again, refused connections are accepted again. */
  async restore(): Promise<void> {
    if (this.held) {
      this.held = false;
      for (const connection of this.connections) connection.release();
    }
    if (this.refusing) {
      this.refusing = false;
      await this.listen();
    }
  }

  /** Resets every open connection (both sides see a connection reset) without cutting. */
  resetConnections(): void {
    for (const connection of [...this.connections]) connection.destroy(true);
  }

  get state(): 'up' | 'hang' | 'refuse' {
    if (this.refusing) return 'refuse';
    return this.held ? 'hang' : 'up';
  }

  stats(): ProxyStats {
    return { ...this.counters, openConnections: this.connections.size };
  }

  resetStats(): void {
    this.counters.connections = 0;
    this.counters.bytesForward = 0;
    this.counters.bytesBackward = 0;
    this.counters.roundTrips = 0;
  }

  /** Stops listening and closes every connection. */
  async close(): Promise<void> {
    for (const connection of [...this.connections]) connection.destroy();
    await this.closeServer();
  }

  private async closeServer(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (!server) return;
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
