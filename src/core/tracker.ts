import { ReplicationTimeoutError, ReplicaUnavailableError } from './errors.js';

/** Asks a replica how far it has replayed; one query per call. Abort when the signal fires. */
export type PositionPoller = (signal: AbortSignal) => Promise<bigint>;

export interface ReplayTrackerOptions {
  /** Names the replica in errors, e.g. `postgres replica (syd)`. */
  name: string;
  poll: PositionPoller;
  /** Prints a position in errors (LSNs as `X/Y`, Redis offsets as numbers). */
  format?: (position: bigint) => string;
  /** Interval between polls while someone waits. Default 1 ms. */
  minIntervalMs?: number;
  /** Interval once the replica has made no progress for a while (paused, far behind). Default 5 ms. */
  maxIntervalMs?: number;
  /** A poll slower than this counts as failed. Default 2000 ms. */
  pollTimeoutMs?: number;
}

/** Counters since the tracker was made. */
export interface ReplayTrackerStats {
  /** Calls to `waitFor`. */
  waits: number;
  /** Waits already satisfied by the last known position: no poll, no delay. */
  immediate: number;
  /** Waits satisfied after polling. */
  resolved: number;
  /** Waits that reached their deadline. */
  timeouts: number;
  /** Waits ended because the replica could not be polled. */
  failures: number;
  /** Total milliseconds callers spent waiting (resolved, timed out and failed waits). */
  waitMs: number;
  /** Queries sent to the replica. */
  polls: number;
  pollErrors: number;
  /** Waiting now, and the most ever waiting at once. */
  waiting: number;
  maxWaiting: number;
  /** Times the known position was forgotten (a reconnect, a failure, a restarted replica). */
  forgotten: number;
}

interface Waiter {
  target: bigint;
  started: number;
  settled: boolean;
  timer: NodeJS.Timeout | null;
  resolve: (waitedMs: number) => void;
  reject: (error: Error) => void;
}

// Without progress for this long, the replica is stalled (paused, far behind): poll less often.
const STALL_AFTER_MS = 250;

/** A binary min-heap of waiters by target position: one poll resolves every waiter at or below it. */
class WaiterHeap {
  private readonly items: Waiter[] = [];

  get size(): number {
    return this.items.length;
  }

  peek(): Waiter | undefined {
    return this.items[0];
  }

  push(waiter: Waiter): void {
    const items = this.items;
    items.push(waiter);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if ((items[parent] as Waiter).target <= waiter.target) break;
      items[i] = items[parent] as Waiter;
      i = parent;
    }
    items[i] = waiter;
  }

  pop(): Waiter | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (items.length === 0 || !last) return top;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= items.length) break;
      const right = left + 1;
      const child =
        right < items.length && (items[right] as Waiter).target < (items[left] as Waiter).target
          ? right
          : left;
      if ((items[child] as Waiter).target >= last.target) break;
      items[i] = items[child] as Waiter;
      i = child;
    }
    items[i] = last;
    return top;
  }

  drain(): Waiter[] {
    return this.items.splice(0);
  }
}

/**
 * Tells callers when a replica has replayed a position. One tracker per replica, shared by
 * everything in the process: it polls only while someone waits, polls every millisecond or so
 * while they do, and resolves every waiter at or below the replayed position from one poll,
 * so ten thousand waiters cost the replica what one does. Each waiter has its own deadline;
 * a failed poll ends every current wait with {@link ReplicaUnavailableError}, never a hang.
 *
 * @example
 * const tracker = new ReplayTracker({ name: 'postgres replica (syd)', poll: pollReplayLsn });
 * await tracker.waitFor(commitLsn, 1000); // resolves with the milliseconds waited
 */
export class ReplayTracker {
  readonly name: string;
  private readonly poll: PositionPoller;
  private readonly format: (position: bigint) => string;
  private readonly minIntervalMs: number;
  private readonly maxIntervalMs: number;
  private readonly pollTimeoutMs: number;
  private readonly waiters = new WaiterHeap();
  private pending = 0;
  private polling = false;
  private wake: (() => void) | null = null;
  private knownPosition: bigint | null = null;
  private currentGeneration = 0;
  private readonly counters: ReplayTrackerStats = {
    waits: 0,
    immediate: 0,
    resolved: 0,
    timeouts: 0,
    failures: 0,
    waitMs: 0,
    polls: 0,
    pollErrors: 0,
    waiting: 0,
    maxWaiting: 0,
    forgotten: 0,
  };

  constructor(options: ReplayTrackerOptions) {
    this.name = options.name;
    this.poll = options.poll;
    this.format = options.format ?? String;
    this.minIntervalMs = options.minIntervalMs ?? 1;
    this.maxIntervalMs = options.maxIntervalMs ?? 5;
    this.pollTimeoutMs = options.pollTimeoutMs ?? 2000;
  }

  /** The highest position the replica has been seen to replay (`null` before the first poll). */
  get known(): bigint | null {
    return this.knownPosition;
  }

  /** True if `target` is known to be replayed already, without asking the replica. */
  hasReplayed(target: bigint): boolean {
    return this.knownPosition !== null && target <= this.knownPosition;
  }

  /**
   * Counts {@link forget} calls: a position read under an earlier generation may come from a
   * replica process that is gone, and {@link observe} ignores it.
   */
  get generation(): number {
    return this.currentGeneration;
  }

  /**
   * Forgets the known position. A position is true only of the replica process that showed
   * it: after a crash, recovery restarts from the last restartpoint and the new process can be
   * behind what the old one had replayed. Call it on a reconnect, a connection failure, or a
   * restarted replica; waiters keep waiting and the next poll learns afresh.
   *
   * @example
   * connection.on('error', () => tracker.forget());
   */
  forget(): void {
    this.knownPosition = null;
    this.currentGeneration++;
    this.counters.forgotten++;
  }

  /**
   * Learns a position the replica was seen to have by other means (a read that asked in its
   * own round trip): later checks need not ask, and waiters at or below it are resolved.
   * `generation` is {@link generation} from before the read was sent: if the tracker forgot
   * since, the position may belong to a replica process that is gone, and is ignored.
   *
   * @example
   * const generation = tracker.generation;
   * const replayed = await readWithReplayLsn(client, query); // pipelined with pg_last_wal_replay_lsn()
   * tracker.observe(replayed, generation);
   */
  observe(position: bigint, generation = this.currentGeneration): void {
    if (generation !== this.currentGeneration) return;
    if (this.knownPosition !== null && position <= this.knownPosition) return;
    this.knownPosition = position;
    this.resolveReplayed();
  }

  stats(): ReplayTrackerStats {
    return { ...this.counters, waiting: this.pending };
  }

  /**
   * Resolves with the milliseconds waited once the replica has replayed `target`. Rejects with
   * {@link ReplicationTimeoutError} after `timeoutMs`, or {@link ReplicaUnavailableError} when
   * the replica cannot be polled.
   */
  waitFor(target: bigint, timeoutMs: number): Promise<number> {
    this.counters.waits++;
    if (this.hasReplayed(target)) {
      this.counters.immediate++;
      return Promise.resolve(0);
    }
    return new Promise<number>((resolve, reject) => {
      const waiter: Waiter = {
        target,
        started: performance.now(),
        settled: false,
        timer: null,
        resolve,
        reject,
      };
      waiter.timer = setTimeout(() => {
        if (waiter.settled) return;
        this.settle(waiter);
        this.counters.timeouts++;
        const reached = this.knownPosition === null ? null : this.format(this.knownPosition);
        reject(new ReplicationTimeoutError(timeoutMs, this.format(target), reached));
      }, timeoutMs);
      this.waiters.push(waiter);
      this.pending++;
      this.counters.maxWaiting = Math.max(this.counters.maxWaiting, this.pending);
      this.startPolling();
    });
  }

  private settle(waiter: Waiter): number {
    waiter.settled = true;
    if (waiter.timer) clearTimeout(waiter.timer);
    this.pending--;
    const waited = performance.now() - waiter.started;
    this.counters.waitMs += waited;
    return waited;
  }

  private startPolling(): void {
    if (this.polling) {
      // A new waiter means a fresh write: poll at the short interval again.
      this.wake?.();
      return;
    }
    this.polling = true;
    void this.loop();
  }

  private async loop(): Promise<void> {
    let lastProgress = performance.now();
    while (this.pending > 0) {
      let position: bigint;
      const generation = this.currentGeneration;
      try {
        position = await this.pollOnce();
      } catch (error) {
        this.failAll(error);
        break;
      }
      const now = performance.now();
      // Forgotten while the poll was out: its answer may come from a process that is gone.
      if (generation !== this.currentGeneration) continue;
      if (this.knownPosition === null || position > this.knownPosition) {
        this.knownPosition = position;
        lastProgress = now;
      }
      this.resolveReplayed();
      if (this.pending === 0) break;
      const interval =
        now - lastProgress > STALL_AFTER_MS ? this.maxIntervalMs : this.minIntervalMs;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, interval);
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.wake = done;
      });
      this.wake = null;
    }
    this.polling = false;
    // What is left in the heap has timed out; drop it rather than keep it until the next wait.
    if (this.pending === 0) this.waiters.drain();
    else this.startPolling();
  }

  private async pollOnce(): Promise<bigint> {
    this.counters.polls++;
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        controller.abort();
        reject(new Error(`no answer within ${this.pollTimeoutMs} ms`));
      }, this.pollTimeoutMs);
    });
    try {
      return await Promise.race([this.poll(controller.signal), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  private resolveReplayed(): void {
    const known = this.knownPosition;
    if (known === null) return;
    for (
      let top = this.waiters.peek();
      top && (top.settled || top.target <= known);
      top = this.waiters.peek()
    ) {
      this.waiters.pop();
      if (top.settled) continue;
      const waited = this.settle(top);
      this.counters.resolved++;
      top.resolve(waited);
    }
  }

  /**
   * Forgets the known position and ends every wait with `ReplicaUnavailableError`: the positions
   * waited for mean nothing any more (the history they belong to was replaced: a Redis primary
   * that restarted without its replication state).
   *
   * @example
   * tracker.reset(new Error('the replication history changed'));
   */
  reset(cause: unknown): void {
    this.forget();
    this.rejectAll(
      `The positions waited for on ${this.name} belong to another history: ${(cause as Error)?.message ?? cause}`,
      cause,
    );
  }

  private failAll(cause: unknown): void {
    this.counters.pollErrors++;
    this.rejectAll(
      `Cannot read the replay position of ${this.name}: ${(cause as Error)?.message ?? cause}`,
      cause,
    );
  }

  private rejectAll(message: string, cause: unknown): void {
    for (const waiter of this.waiters.drain()) {
      if (waiter.settled) continue;
      this.settle(waiter);
      this.counters.failures++;
      waiter.reject(new ReplicaUnavailableError(message, { cause }));
    }
  }
}
