import { BoundedWait } from './bounded-wait.js';
import type { RegionSettings } from './config.js';
import type { ConsistencyContext } from './context.js';
import { ReplicaHealth } from './replica-health.js';
import { type RouteReason, type SourceTelemetry, untraced } from './telemetry.js';
import { type PositionPoller, ReplayTracker, type ReplayTrackerStats } from './tracker.js';

/** SQLSTATE 25006, read_only_sql_transaction: a replica refused a statement that writes. */
export const READ_ONLY_SQL_TRANSACTION = '25006';

/**
 * Whether a checked read's SQL error is its answer: when the replica had what the context
 * needs (`caughtUp`), or when it refused a write (25006), which no wait changes. Otherwise the
 * error came from a replica that was behind and may be as stale as an old row (a table this
 * context just created, not replayed yet): wait, and read again.
 */
export function errorIsAnswer(error: unknown, caughtUp: boolean): boolean {
  return caughtUp || (error as { code?: unknown }).code === READ_ONLY_SQL_TRANSACTION;
}

/** Where a read runs. */
export type Target = 'primary' | 'replica';

/**
 * What a read in a context does, decided at once:
 * - `replica`: read the replica, there is nothing to wait for;
 * - `primary`: the replica is out of use (down, restarting): read the primary;
 * - `check`: read the replica asking its replay position in the same round trip, then tell
 *   {@link ReplicaRoute.checked} what it said; {@link ReplicaRoute.needed} is the position;
 * - `wait`: only {@link ReplicaRoute.choose} can tell (the source not named yet, or a replica
 *   that just missed the bound).
 */
export type ReadPlan = 'replica' | 'primary' | 'check' | 'wait';

/** Where a route finds its source's identity in contexts and tokens. */
export interface KeySource {
  /** The key, if it is known already (the route's fast path reads it). */
  readonly known: string | null;
  /** The key, asked for if needed. */
  get(): Promise<string>;
}

/**
 * A source's identity in contexts and tokens (e.g. `pg:<system identifier>`): asked once when
 * first needed, by one caller at a time, and asked again after a failure.
 *
 * @example
 * const key = new SourceKey(async () => `pg:${await systemIdentifier()}`);
 * context.observe(key.known ?? (await key.get()), lsn);
 */
export class SourceKey implements KeySource {
  private value: string | null = null;
  private pending: Promise<string> | null = null;

  constructor(private readonly ask: () => Promise<string>) {}

  /** The key, if it is known already. */
  get known(): string | null {
    return this.value;
  }

  get(): Promise<string> {
    if (this.value !== null) return Promise.resolve(this.value);
    // Regional's own query, not the app's: no trace of its own (see `untraced`).
    this.pending ??= untraced(() => this.ask()).then(
      (key) => {
        this.value = key;
        this.pending = null;
        return key;
      },
      (error: unknown) => {
        this.pending = null;
        throw error;
      },
    );
    return this.pending;
  }

  /** Records `position` of this source in `context`; synchronous once the key is known. */
  record(context: ConsistencyContext, position: bigint): void | Promise<void> {
    if (this.value !== null) {
      context.observe(this.value, position);
      return;
    }
    return this.get().then((key) => void context.observe(key, position));
  }
}

export interface ReplicaRouteOptions {
  settings: Pick<RegionSettings, 'maxWaitMs' | 'waitPolicy' | 'replicaRetryMs'>;
  /** Asks the replica how far it has replayed; its connection is the replica's sentinel. */
  poll: PositionPoller;
  /** The source's identity in contexts and tokens. */
  key: KeySource;
  /** The primary's position now: what a replica that restarted must replay before reads use it. */
  primaryPosition(): Promise<bigint>;
  /** Names the replica in messages: `the replica in syd`. */
  name: string;
  /** Where it is, for error messages (a redacted URL). */
  where?: string;
  /** Says where reads go meanwhile, in warnings: `reads go to the primary`. */
  fallback: string;
  format?: (position: bigint) => string;
  warn(message: string, error?: unknown): void;
  /** Where waits for replication are recorded. */
  telemetry?: SourceTelemetry;
}

/** Counters of the reads a route placed, since it was made. */
export interface ReplicaRouteStats {
  /** Reads answered by the local replica / by the primary. */
  replicaReads: number;
  primaryReads: number;
  /** Reads sent to the primary because the replica had not caught up within the bound. */
  waitTimeouts: number;
  /**
   * Reads that asked the replica's position in their own round trip: it had what they needed /
   * it was behind, and they waited.
   */
  checkedReads: number;
  checkedReadsBehind: number;
  /** Times the replica failed and reads moved to the primary for a while. */
  replicaFailures: number;
  /** Times the replica restarted and was kept out of use until it had caught up. */
  replicaRestarts: number;
  tracker: ReplayTrackerStats;
}

/**
 * The routing core every driver shares (node-postgres, postgres.js, the Redis store): for this
 * region's replica it owns the replay tracker, the bounded wait and its policy, the replica's
 * health (down after a failure; fenced after a restart until it has caught up; what was known
 * of it forgotten whenever it may be another process), the source's key, and the counters. A
 * driver asks {@link plan} where each read goes — synchronously, without allocating, on the
 * common path — and reports what happened; it owns only its wire protocol.
 *
 * @example
 * const route = new ReplicaRoute({ settings, poll, sourceKey, primaryPosition, name, fallback: 'reads go to the primary', warn });
 * switch (route.plan(currentContext())) {
 *   case 'replica': return readReplica(); // then route.served('replica')
 *   case 'primary': return readPrimary();
 *   case 'check': return readChecked(route.needed(currentContext())); // then route.checked(…)
 *   case 'wait': return route.choose(currentContext()).then(read);
 * }
 */
export class ReplicaRoute {
  readonly tracker: ReplayTracker;
  readonly health: ReplicaHealth;
  private readonly bounded: BoundedWait;
  private readonly key: KeySource;
  private readonly counts = {
    replicaReads: 0,
    primaryReads: 0,
    waitTimeouts: 0,
    checkedReads: 0,
    checkedReadsBehind: 0,
  };

  constructor(options: ReplicaRouteOptions) {
    this.key = options.key;
    this.tracker = new ReplayTracker({
      name: options.where ? `${options.name} (${options.where})` : options.name,
      poll: options.poll,
      format: options.format,
    });
    const tracker = this.tracker;
    this.health = new ReplicaHealth({
      forget: () => tracker.forget(),
      catchUp: async () => void (await tracker.waitFor(await options.primaryPosition(), 5_000)),
      retryMs: options.settings.replicaRetryMs,
      name: options.name,
      fallback: options.fallback,
      warn: options.warn,
    });
    this.bounded = new BoundedWait(
      options.settings,
      {
        onTimeout: () => this.counts.waitTimeouts++,
        onUnavailable: (error) => this.health.failed(error),
        onWaited: (ms, outcome) => options.telemetry?.waited(ms, outcome),
      },
      options.format,
    );
  }

  /** Where a read in `context` goes, if that can be said at once (see {@link ReadPlan}). */
  plan(context: ConsistencyContext): ReadPlan {
    if (!this.health.usable()) return 'primary';
    const key = this.key.known;
    if (key === null) return context.empty ? 'replica' : 'wait';
    const needed = context.position(key);
    if (needed === undefined || this.tracker.hasReplayed(needed)) return 'replica';
    return this.bounded.lagging ? 'wait' : 'check';
  }

  /** The position a read planned `check` must see on the replica. */
  needed(context: ConsistencyContext): bigint {
    return context.position(this.key.known as string) as bigint;
  }

  /**
   * Where a read in `context` goes after waiting, if it must (up to the bound; then the policy:
   * the primary, or `ReplicationTimeoutError`). The time waited is added to the context.
   */
  async choose(context: ConsistencyContext): Promise<Target> {
    if (!this.health.usable()) return 'primary';
    const key = this.key.known ?? (await this.key.get());
    const needed = context.position(key);
    if (needed === undefined || this.tracker.hasReplayed(needed)) return 'replica';
    return this.bounded.replicaOrPrimary(this.tracker, needed, context);
  }

  /** After a checked read found the replica behind `needed`: wait like any read, within the bound. */
  afterCheck(needed: bigint, context: ConsistencyContext): Promise<Target> {
    return this.bounded.replicaOrPrimary(this.tracker, needed, context);
  }

  /**
   * What a read that asked the replica's position in its own round trip learnt: true if the
   * replica had `needed` (its answer is good). `generation` is {@link generation} from before
   * the read was sent: a position from a replica process that may be gone is not learnt.
   */
  checked(replayed: bigint | null, needed: bigint, generation: number): boolean {
    if (replayed === null) return false;
    this.tracker.observe(replayed, generation);
    if (replayed >= needed) {
      this.counts.checkedReads++;
      return true;
    }
    this.counts.checkedReadsBehind++;
    return false;
  }

  /** See {@link ReplayTracker.generation}. */
  get generation(): number {
    return this.tracker.generation;
  }

  /** Counts a read answered by `target`. */
  served(target: Target): void {
    if (target === 'replica') this.counts.replicaReads++;
    else this.counts.primaryReads++;
  }

  /**
   * Resolves with the milliseconds waited once the replica has `position` (at once while it is
   * out of use: reads go to the primary then).
   */
  waitFor(position: bigint, timeoutMs: number): Promise<number> {
    if (!this.health.usable()) return Promise.resolve(0);
    return this.tracker.waitFor(position, timeoutMs);
  }

  /** True if the replica is known to have `position`. */
  hasReplayed(position: bigint): boolean {
    return this.tracker.hasReplayed(position);
  }

  /** True if reads may go to the replica now. */
  usable(): boolean {
    return this.health.usable();
  }

  /** The replica failed (a read, a connection): out of use for a while, what was known forgotten. */
  failed(error: unknown): void {
    this.health.failed(error);
  }

  stats(): ReplicaRouteStats {
    const health = this.health.stats();
    return {
      ...this.counts,
      replicaFailures: health.failures,
      replicaRestarts: health.restarts,
      tracker: this.tracker.stats(),
    };
  }

  close(): void {
    this.health.close();
  }
}

/**
 * Why a read went to the primary when nobody chose it: a region without a replica reads there
 * (`read`); otherwise the replica was behind past the bound (`lag`) or out of use (`replica_down`).
 */
export function fallbackReason(route: ReplicaRoute | null): RouteReason {
  return !route ? 'read' : route.usable() ? 'lag' : 'replica_down';
}

/**
 * What every driver's reader does with a read it served: counts it (on the route where this
 * region has a replica, else as a primary read without one) and reports it with its reason, by
 * default `read` on the replica, or why the route fell back ({@link fallbackReason}).
 *
 * @example
 * class Reader extends ReadCounter {
 *   constructor(options: ReaderOptions) { super(options.route, options.telemetry); }
 * }
 * reader.served('replica');
 */
export class ReadCounter {
  /** Reads answered by the primary in a region without a replica (no route to count them). */
  primaryReadsWithoutRoute = 0;
  readonly #route: ReplicaRoute | null;
  readonly #telemetry: SourceTelemetry;

  constructor(route: ReplicaRoute | null, telemetry: SourceTelemetry) {
    this.#route = route;
    this.#telemetry = telemetry;
  }

  /** Counts a read answered by `target`, for `reason` (by default as the class says). */
  served(target: Target, reason?: RouteReason): void {
    if (this.#route) this.#route.served(target);
    else if (target === 'primary') this.primaryReadsWithoutRoute++;
    this.#telemetry.routed(
      target,
      reason ?? (target === 'replica' ? 'read' : fallbackReason(this.#route)),
    );
  }

  /** Why a read in this region goes to the primary when nobody chose it. */
  fallbackReason(): RouteReason {
    return fallbackReason(this.#route);
  }
}

/** A source's own counters, beside its route's. */
export interface SourceCounts {
  /** Reads answered by the primary in a region without a replica (no route to count them). */
  primaryReadsWithoutRoute: number;
  writes: number;
  readOnlyRetries: number;
}

/**
 * The counters a Postgres driver reports (`pool.stats()`, `database.stats()`): its route's and
 * its own, in one shape.
 */
export function sourceStats(route: ReplicaRoute | null, counts: SourceCounts) {
  const routed = route?.stats();
  return {
    replicaReads: routed?.replicaReads ?? 0,
    primaryReads: (routed?.primaryReads ?? 0) + counts.primaryReadsWithoutRoute,
    writes: counts.writes,
    readOnlyRetries: counts.readOnlyRetries,
    waitTimeouts: routed?.waitTimeouts ?? 0,
    replicaFailures: routed?.replicaFailures ?? 0,
    replicaRestarts: routed?.replicaRestarts ?? 0,
    checkedReads: routed?.checkedReads ?? 0,
    checkedReadsBehind: routed?.checkedReadsBehind ?? 0,
    tracker: routed?.tracker ?? null,
  };
}
