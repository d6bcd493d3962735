import type { ConsistencyContext } from '../core/context.js';
import { ReplayTracker, type ReplayTrackerStats } from '../core/tracker.js';
import type { ConnectionSettings } from './connection.js';
import {
  type OffsetPoller,
  type ReplicaConnectionEvents,
  redisOffsetPoller,
} from './offset-poller.js';
import { parseReplicationInfo } from './replication-info.js';

export interface HistoriesOptions {
  /** The local replica, polled while someone waits (`null`: reads go to the primary). */
  replicaUrl: string | null;
  /** Names the replica in errors. */
  trackerName: string;
  connection?: ConnectionSettings | undefined;
  /** `INFO replication` of the primary. */
  primaryInfo: () => Promise<string>;
  /** `INFO replication` of the local replica, on the store's read connection. */
  replicaInfo: (() => Promise<string>) | null;
  /** Told when the poller's connection to the replica is lost and made again (a `ReplicaRoute`). */
  events?: ReplicaConnectionEvents;
}

/** How long a known history is trusted before `sourceKey()` asks again. */
const CHECK_EVERY_MS = 1_000;
/** Earlier histories remembered, so positions of theirs are recognised (and not waited on). */
const REMEMBERED = 8;

const short = (replid: string) => `${replid.slice(0, 8)}…`;

/**
 * The replication histories a shared store has seen. Redis offsets count from the start of a
 * history (its replication id): a primary that restarts without its replication state, or a
 * failover, starts another one, and a replica follows it only once it has resynchronised. So
 * positions are keyed `redis:<replication id>`, each history gets its own replay tracker, and
 * the tracker only accepts an offset from a replica that follows that same history.
 */
export class Histories {
  /** The source key of the current history, `null` until one is known. */
  key: string | null = null;
  /** Times the history changed. */
  changes = 0;
  /** The replay tracker for the current history (`null` without a replica or a history). */
  tracker: ReplayTracker | null = null;
  private replid: string | null = null;
  private checkedAt = Number.NEGATIVE_INFINITY;
  private confirmedByPrimaryAt = Number.NEGATIVE_INFINITY;
  private readonly previous = new Set<string>();
  private readonly retired: ReplayTracker[] = [];
  private readonly poller: OffsetPoller | null;
  private lookup: Promise<string> | null = null;

  constructor(private readonly options: HistoriesOptions) {
    this.poller = options.replicaUrl
      ? redisOffsetPoller(options.replicaUrl, options.connection, options.events)
      : null;
    // Connected now (it polls only while someone waits), so the first wait doesn't pay for it.
    this.poller?.warm();
  }

  /** The primary said which history it is in (a write's reply): returns that history's key. */
  confirm(replid: string): string {
    this.confirmedByPrimaryAt = performance.now();
    return this.learn(replid);
  }

  /** True if `context` holds a position of an earlier history of this store. */
  previousIn(context: ConsistencyContext): boolean {
    if (this.previous.size === 0) return false;
    for (const key of this.previous) if (context.position(key) !== undefined) return true;
    return false;
  }

  /** The current history's key, asked again (replica first, else primary) once it is a second old. */
  sourceKey(): Promise<string> {
    if (this.key !== null && performance.now() - this.checkedAt < CHECK_EVERY_MS)
      return Promise.resolve(this.key);
    this.lookup ??= this.lookUp().finally(() => {
      this.lookup = null;
    });
    return this.lookup;
  }

  /** Forgets what the replica was known to have processed (it may be restarting). */
  forget(): void {
    this.tracker?.forget();
  }

  /**
   * Resolves once the local replica has processed what the primary has now, in the primary's
   * current history: what a restarted replica must reach before reads use it again.
   */
  async catchUp(timeoutMs: number): Promise<void> {
    const { replid, offset } = parseReplicationInfo(await this.options.primaryInfo());
    this.confirm(replid);
    await this.tracker?.waitFor(offset, timeoutMs);
  }

  trackerStats(): ReplayTrackerStats | null {
    if (!this.tracker) return null;
    const total = this.tracker.stats();
    for (const tracker of this.retired) {
      const s = tracker.stats();
      for (const key of Object.keys(total) as (keyof ReplayTrackerStats)[]) {
        if (key === 'maxWaiting') total.maxWaiting = Math.max(total.maxWaiting, s.maxWaiting);
        else total[key] += s[key];
      }
    }
    return total;
  }

  close(): void {
    this.poller?.close();
  }

  private async lookUp(): Promise<string> {
    if (this.options.replicaInfo) {
      try {
        // A replica linked to the primary follows the primary's history: ask it, it is local.
        const info = parseReplicationInfo(await this.options.replicaInfo());
        if (info.role === 'slave' && info.linkUp) return this.fromReplica(info.replid);
      } catch {
        // The primary can tell.
      }
    }
    try {
      return this.confirm(parseReplicationInfo(await this.options.primaryInfo()).replid);
    } catch (error) {
      // Neither can be asked: the history last known is still the best answer.
      if (this.key !== null) return this.key;
      throw error;
    }
  }

  private fromReplica(replid: string): string {
    // Right after the primary restarts, its replicas still claim the old history until their
    // link notices; the primary's own word from a write is fresher.
    if (
      this.key !== null &&
      replid !== this.replid &&
      performance.now() - this.confirmedByPrimaryAt < CHECK_EVERY_MS
    ) {
      return this.key;
    }
    return this.learn(replid);
  }

  private learn(replid: string): string {
    this.checkedAt = performance.now();
    if (replid === this.replid) return this.key as string;
    if (this.key !== null) {
      this.changes++;
      this.previous.add(this.key);
      if (this.previous.size > REMEMBERED)
        this.previous.delete(this.previous.values().next().value as string);
    }
    if (this.tracker) {
      this.retired.push(this.tracker);
      if (this.retired.length > REMEMBERED) this.retired.shift();
    }
    this.replid = replid;
    this.key = `redis:${replid}`;
    this.previous.delete(this.key);
    this.tracker = this.poller ? this.newTracker(replid, this.poller) : null;
    return this.key;
  }

  private newTracker(replid: string, poller: OffsetPoller): ReplayTracker {
    return new ReplayTracker({
      name: this.options.trackerName,
      poll: async (signal) => {
        const info = await poller(signal);
        if (info.role !== 'slave') {
          throw new Error(
            "it is not a replica (INFO replication says role:master): REDIS_REPLICA_URL must point at this region's replica",
          );
        }
        if (info.replid !== replid) {
          if (info.linkUp) this.fromReplica(info.replid);
          throw new Error(
            `it follows another replication history (${short(info.replid)}, not ${short(replid)}): the primary restarted or failed over, or the replica is resynchronising`,
          );
        }
        if (replid === this.replid) this.checkedAt = performance.now();
        return info.offset;
      },
    });
  }
}
