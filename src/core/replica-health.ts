import { setTimeout as sleep } from 'node:timers/promises';

export interface ReplicaHealthOptions {
  /** Forgets what is known of the replica's position (its trackers' `forget()`). */
  forget(): void;
  /**
   * Resolves once the replica has replayed what the primary has now; rejects to be asked again
   * shortly. A replica that restarted is out of use until then: everything a read could have
   * seen on its previous process is at or below the primary's position.
   */
  catchUp(): Promise<void>;
  /** After a failure, reads skip the replica this long (`REGIONAL_REPLICA_RETRY_MS`). */
  retryMs: number;
  /** Names the replica in warnings, e.g. `the replica in syd`. */
  name: string;
  /** Where reads go meanwhile, for warnings, e.g. `reads go to the primary`. */
  fallback: string;
  warn(message: string, error?: unknown): void;
}

/** Counters since the health was made. */
export interface ReplicaHealthStats {
  /** Times the replica failed and reads moved to the primary for a while. */
  failures: number;
  /** Times a restarted replica was kept out of use until it had caught up. */
  restarts: number;
}

// While a restarted replica catches up: how soon to ask again after a failed attempt.
const CATCH_UP_RETRY_MS = 200;

/**
 * Whether this region's replica may serve reads right now, and what is known of its position:
 * the part every replicated source (Postgres, Redis) shares. A replica is out of use for a
 * while after it fails; while its process cannot be told apart from a restarted one (the
 * sentinel connection is lost); and, once a restart is seen (another process start time),
 * until it has replayed what the primary had then — after a crash, recovery resumes from the
 * last restartpoint, so the new process can be behind data readers already saw. Every one of
 * these forgets the tracker's known position.
 *
 * @example
 * const health = new ReplicaHealth({
 *   forget: () => tracker.forget(),
 *   catchUp: async () => void (await tracker.waitFor(await primaryPosition(), 5000)),
 *   retryMs: 2000, name: 'the replica in syd', fallback: 'reads go to the primary', warn,
 * });
 * const poller = replayLsnPoller(config, { onConnect: (epoch) => health.connected(epoch), onLost: (e) => health.lost(e) });
 * if (health.usable()) { … read on the replica … }
 */
export class ReplicaHealth {
  private downUntil = 0;
  /** `lost`: no sentinel connection; `catching-up`: a restarted replica not yet caught up. */
  private fence: 'none' | 'lost' | 'catching-up' = 'none';
  private epoch: string | null = null;
  private catchUps = 0;
  private closed = false;
  private readonly counters: ReplicaHealthStats = { failures: 0, restarts: 0 };

  constructor(private readonly options: ReplicaHealthOptions) {}

  /** True if reads may go to the replica now. Synchronous and allocation-free: the read path asks it. */
  usable(): boolean {
    if (this.fence !== 'none') return false;
    return this.downUntil === 0 || Date.now() >= this.downUntil;
  }

  /** The replica failed (a read, a connection, a poll): out of use for `retryMs`, its position forgotten. */
  failed(error: unknown): void {
    this.options.forget();
    const now = Date.now();
    if (now < this.downUntil) return;
    this.counters.failures++;
    this.downUntil = now + this.options.retryMs;
    this.options.warn(
      `${capitalize(this.options.name)} failed (${(error as Error)?.message ?? error}); ${this.options.fallback} for ${this.options.retryMs} ms.`,
    );
  }

  /**
   * The sentinel connection broke: until it is back, nothing says which process answers. Counted
   * and said as a failure (once per `retryMs`, with whatever else failed meanwhile): a driver
   * whose idle connections close quietly would otherwise move its reads without a word.
   */
  lost(error: unknown): void {
    this.options.forget();
    if (this.fence !== 'none') return;
    this.fence = 'lost';
    const now = Date.now();
    if (now < this.downUntil) return;
    this.counters.failures++;
    this.downUntil = now + this.options.retryMs;
    this.options.warn(
      `${capitalize(this.options.name)} cannot be reached (${(error as Error)?.message ?? error}); ${this.options.fallback} until it is back.`,
    );
  }

  /** The sentinel connected to the replica process started at `epoch`. */
  connected(epoch: string): void {
    this.options.forget();
    const previous = this.epoch;
    this.epoch = epoch;
    if (previous === null || previous === epoch) {
      // The first process seen, or the same one after a broken connection.
      if (this.fence === 'lost') {
        this.fence = 'none';
        this.options.warn(`${capitalize(this.options.name)} is back; reads use it again.`);
      }
      return;
    }
    this.counters.restarts++;
    this.fence = 'catching-up';
    this.options.warn(
      `${capitalize(this.options.name)} restarted; ${this.options.fallback} until it has replayed what the primary has now.`,
    );
    void this.catchUp(++this.catchUps);
  }

  stats(): ReplicaHealthStats {
    return { ...this.counters };
  }

  /** Stops a catch-up in progress. */
  close(): void {
    this.closed = true;
  }

  /** Waits until the replica has replayed the primary's position now, then lets reads in. */
  private async catchUp(ticket: number): Promise<void> {
    const current = () => !this.closed && this.catchUps === ticket && this.fence === 'catching-up';
    while (current()) {
      try {
        await this.options.catchUp();
        if (!current()) return;
        this.fence = 'none';
        this.options.warn(`${capitalize(this.options.name)} has caught up; reads use it again.`);
        return;
      } catch {
        // The primary could not say, or the replica is not there yet: ask again shortly.
        await sleep(CATCH_UP_RETRY_MS, undefined, { ref: false });
      }
    }
  }
}

const capitalize = (text: string) => text.charAt(0).toUpperCase() + text.slice(1);
