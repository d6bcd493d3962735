import type { RegionSettings } from './config.js';
import type { ConsistencyContext } from './context.js';
import { ReplicationTimeoutError, ReplicaUnavailableError } from './errors.js';
import type { ReplayTracker } from './tracker.js';

export interface BoundedWaitHooks {
  /** A read gave up waiting (bound reached, or the replica recently missed it). */
  onTimeout(): void;
  /** The replica could not be asked: take it out of use for a while. */
  onUnavailable(error: unknown): void;
  /** A read waited `ms` for the replica, then went to `outcome` (or failed: `error`). */
  onWaited?(ms: number, outcome: 'replica' | 'primary' | 'error'): void;
}

/**
 * The bound and policy of every read that must wait for a replica (Postgres or Redis): wait up
 * to `maxWaitMs`; past it read from the primary, or throw with the `error` policy; after a
 * missed bound, don't make every read wait the full bound again for `replicaRetryMs`.
 *
 * @example
 * const bounded = new BoundedWait(config, { onTimeout: () => stats.waitTimeouts++, onUnavailable: markDown });
 * const where = await bounded.replicaOrPrimary(tracker, position, currentContext());
 */
export class BoundedWait {
  private laggingUntil = 0;

  constructor(
    private readonly settings: Pick<RegionSettings, 'maxWaitMs' | 'waitPolicy' | 'replicaRetryMs'>,
    private readonly hooks: BoundedWaitHooks,
    private readonly format: (position: bigint) => string = String,
  ) {}

  /** True while reads skip the replica because it recently missed the bound. */
  get lagging(): boolean {
    return Date.now() < this.laggingUntil;
  }

  /**
   * Resolves `replica` once `tracker`'s replica has `target` (within the context's `maxWaitMs`,
   * else the settings'), or `primary` when the read should go there instead; throws
   * `ReplicationTimeoutError` under the `error` policy, after calling the context's `onLag`.
   * The time waited is added to `context.waitedMs`.
   */
  async replicaOrPrimary(
    tracker: ReplayTracker,
    target: bigint,
    context: ConsistencyContext,
  ): Promise<'replica' | 'primary'> {
    if (this.lagging) {
      // It recently missed the bound: don't make every read wait the full bound again.
      context.onLag?.();
      if (this.settings.waitPolicy === 'error') {
        throw new ReplicationTimeoutError(
          0,
          this.format(target),
          tracker.known === null ? null : this.format(tracker.known),
        );
      }
      this.hooks.onTimeout();
      return 'primary';
    }
    const maxWaitMs = context.maxWaitMs ?? this.settings.maxWaitMs;
    try {
      const waited = await tracker.waitFor(target, maxWaitMs);
      context.waitedMs += waited;
      this.hooks.onWaited?.(waited, 'replica');
      return 'replica';
    } catch (error) {
      if (error instanceof ReplicationTimeoutError) {
        context.waitedMs += maxWaitMs;
        this.hooks.onWaited?.(
          maxWaitMs,
          this.settings.waitPolicy === 'error' ? 'error' : 'primary',
        );
        this.hooks.onTimeout();
        this.laggingUntil = Date.now() + this.settings.replicaRetryMs;
        context.onLag?.();
        if (this.settings.waitPolicy === 'error') throw error;
        return 'primary';
      }
      if (error instanceof ReplicaUnavailableError) {
        this.hooks.onUnavailable(error);
        context.onLag?.();
        return 'primary';
      }
      throw error;
    }
  }
}
