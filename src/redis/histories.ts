import type { ConsistencyContext } from '../core/context.js';
import type { KeySource } from '../core/route.js';
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
  connection?: ConnectionSettings | undefined;
  /** `INFO replication` of the primary. */
  primaryInfo: () => Promise<string>;
  /** `INFO replication` of the local replica, on the store's read connection. */
  replicaInfo: (() => Promise<string>) | null;
  /** Told when the poller's connection to the replica is lost and made again (a `ReplicaHealth`). */
  events?: ReplicaConnectionEvents;
  /** Told when the history changes: positions waited for in the old one mean nothing now. */
  onChange?: (from: string, to: string) => void;
}

/** How long a known history is trusted before `get()` asks again. */
const CHECK_EVERY_MS = 1_000;
/** Earlier histories remembered, so positions of theirs are recognised (and not waited on). */
const REMEMBERED = 8;

const short = (replid: string) => `${replid.slice(0, 8)}…`;

/**
 * The replication histories a shared store has seen. Redis offsets count from the start of a
 * history (its replication id): a primary that restarts without its replication state, or a
 * failover, starts another one, and a replica follows it only once it has resynchronised. So
 * positions are keyed `redis:<replication id>` (this is the route's {@link KeySource}), and the
 * replica's offset is accepted only from a replica that follows the current history.
 */
export class Histories implements KeySource {
  /** Times the history changed. */
  changes = 0;
  private key: string | null = null;
  private replid: string | null = null;
  private checkedAt = Number.NEGATIVE_INFINITY;
  private confirmedByPrimaryAt = Number.NEGATIVE_INFINITY;
  private readonly previous = new Set<string>();
  private readonly poller: OffsetPoller | null;
  private lookup: Promise<string> | null = null;

  constructor(private readonly options: HistoriesOptions) {
    this.poller = options.replicaUrl
      ? redisOffsetPoller(options.replicaUrl, options.connection, options.events)
      : null;
  }

  /** The current history's key, `null` until one is known. */
  get known(): string | null {
    return this.key;
  }

  /** Opens the poller's connection (the replica's sentinel) now. */
  warm(): void {
    this.poller?.warm();
  }

  /**
   * The replica's processed offset in the current history, for the route's tracker: fails if
   * it is not a replica, or follows another history.
   */
  readonly poll = async (signal: AbortSignal): Promise<bigint> => {
    const info = await (this.poller as OffsetPoller)(signal);
    if (info.role !== 'slave') {
      throw new Error(
        "it is not a replica (INFO replication says role:master): REDIS_REPLICA_URL must point at this region's replica",
      );
    }
    const replid = this.replid;
    if (info.replid !== replid) {
      if (info.linkUp) this.fromReplica(info.replid);
      throw new Error(
        `it follows another replication history (${short(info.replid)}, not ${replid ? short(replid) : 'a known one'}): the primary restarted or failed over, or the replica is resynchronising`,
      );
    }
    this.checkedAt = performance.now();
    return info.offset;
  };

  /** The primary said which history it is in (a write's reply): returns that history's key. */
  confirm(replid: string): string {
    this.confirmedByPrimaryAt = performance.now();
    return this.learn(replid);
  }

  /** The primary's offset now, in its current history (what a restarted replica must reach). */
  async primaryOffset(): Promise<bigint> {
    const { replid, offset } = parseReplicationInfo(await this.options.primaryInfo());
    this.confirm(replid);
    return offset;
  }

  /** True if `context` holds a position of an earlier history of this store. */
  previousIn(context: ConsistencyContext): boolean {
    if (this.previous.size === 0) return false;
    for (const key of this.previous) if (context.position(key) !== undefined) return true;
    return false;
  }

  /** The current history's key, asked again (replica first, else primary) once it is a second old. */
  get(): Promise<string> {
    if (this.key !== null && performance.now() - this.checkedAt < CHECK_EVERY_MS)
      return Promise.resolve(this.key);
    this.lookup ??= this.lookUp().finally(() => {
      this.lookup = null;
    });
    return this.lookup;
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
    const from = this.key;
    if (from !== null) {
      this.changes++;
      this.previous.add(from);
      if (this.previous.size > REMEMBERED)
        this.previous.delete(this.previous.values().next().value as string);
    }
    this.replid = replid;
    this.key = `redis:${replid}`;
    this.previous.delete(this.key);
    if (from !== null) this.options.onChange?.(from, this.key);
    return this.key;
  }
}
