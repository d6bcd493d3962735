import type { Redis } from 'ioredis';
import { redactUrl } from '../core/config.js';
import { type ConsistencyContext, currentContext } from '../core/context.js';
import { ConfigError, ReplicaUnavailableError } from '../core/errors.js';
import { fallbackReason, ReplicaRoute } from '../core/route.js';
import type { ReplicatedSource } from '../core/source.js';
import { SourceTelemetry } from '../core/telemetry.js';
import type { ReplayTracker, ReplayTrackerStats } from '../core/tracker.js';
import { commandKind, type RedisArg } from './commands.js';
import { loadRedisConfig, type RedisConfig, type RedisOptions } from './config.js';
import { type ConnectionSettings, connect, connectionFailure, ready } from './connection.js';
import { RedisPrimaryUnavailableError } from './errors.js';
import { Histories } from './histories.js';
import { parseReplicationInfo } from './replication-info.js';

export interface SharedStoreOptions extends RedisOptions {
  /** An already resolved configuration (otherwise read from options and the environment). */
  config?: RedisConfig;
  /** ioredis settings for every connection (TLS, username, …); not the URL. */
  connection?: ConnectionSettings;
  /** A write with no answer after this long fails, its outcome unknown. Default 5000 ms. */
  writeTimeoutMs?: number;
  /** A replica read with no answer after this long is sent to the primary. Default 1000 ms. */
  replicaTimeoutMs?: number;
  /** Receives warnings (a region without a replica, a replica going away). Default: `console.warn`. */
  onWarning?: (message: string, error?: unknown) => void;
}

export interface StoreCommandOptions {
  /**
   * For writes: record the primary's replication offset so this context's later reads wait
   * until the local replica has it. Default `true`; `false` for writes nobody reads back at
   * once (counters), which then cost nothing extra.
   */
  await?: boolean;
  /** `primary`: read from the primary whatever the command. */
  on?: 'primary';
}

/** Counters since the store was made (the same as `RegionalPool`'s). */
export interface SharedStoreStats {
  /** Reads answered by the local replica / by the primary. */
  replicaReads: number;
  primaryReads: number;
  /** Writes the primary acknowledged. */
  writes: number;
  /** Reads sent to the primary because the replica had not caught up within the bound. */
  waitTimeouts: number;
  /** Times the replica failed (down, or following another history) and reads moved to the primary. */
  replicaFailures: number;
  /**
   * Times the replica was seen to have restarted (another `run_id`) and was kept out of use
   * until it had processed what the primary had then.
   */
  replicaRestarts: number;
  /** Times the replication history changed (primary restarted without its state, failover). */
  historyChanges: number;
  /** The replay trackers' counters, summed over histories (`null` without a replica). */
  tracker: ReplayTrackerStats | null;
}

/** A command for {@link SharedStore.transaction}: its name, then its arguments. */
export type RedisCommand = [name: string, ...args: RedisArg[]];

/**
 * The shared store: Redis data every region sees. Reads go to this region's replica, writes
 * to the primary. A write is pipelined with `INFO replication`, so the primary's replication
 * offset after it — and the history it belongs to — comes back in the same round trip; the
 * current context records it under the source key `redis:<replication id>`, and the context's
 * next read waits until the local replica has processed that offset (one poller per replica,
 * polling only while someone waits), up to `REGIONAL_MAX_WAIT_MS`; past it the read goes to
 * the primary (or fails, with `REGIONAL_WAIT_POLICY=error`). A replica that is down sends
 * reads to the primary; an unreachable primary fails writes with
 * {@link RedisPrimaryUnavailableError}.
 *
 * Without `PRIMARY_REGION` everything goes to `REDIS_URL` and nothing waits.
 *
 * @example
 * import { SharedStore } from 'regional/redis';
 *
 * const store = new SharedStore(); // REDIS_URL, REDIS_REPLICA_URL, PRIMARY_REGION, REGION
 * await store.set(`session:${id}`, JSON.stringify(session), { ttlMs: 86_400_000 }); // primary
 * await store.get(`session:${id}`); // local replica, sees the set
 * await store.incr('requests', { await: false }); // fire and forget: nothing waits for it
 * await store.call('zadd', ['leaders', 10, 'ann']); // any command, routed by its kind
 */
export class SharedStore implements ReplicatedSource {
  readonly config: RedisConfig;
  /** The connection to the primary (as reached from this region). */
  readonly primary: Redis;
  /** The connection to this region's replica (`null` where reads go to the primary). */
  readonly replica: Redis | null;
  private readonly histories: Histories;
  private readonly route: ReplicaRoute | null;
  private readonly telemetry: SourceTelemetry;
  private readonly warn: (message: string, error?: unknown) => void;
  private readonly where: string;
  private primaryDown = false;
  private ended = false;
  /** Writes, and reads served by the primary where there is no route (no replica). */
  private readonly counters = { writes: 0, primaryReads: 0 };

  constructor(options: SharedStoreOptions = {}) {
    this.config = options.config ?? loadRedisConfig(options);
    const { url, replicaUrl, region } = this.config;
    if (!url) {
      throw new ConfigError(
        options.url !== undefined ? 'url' : 'REDIS_URL',
        'is not set; give the primary Redis as reached from this region, e.g. redis://:password@host:6379',
      );
    }
    this.warn =
      options.onWarning ?? ((message, error) => console.warn(`[regional] ${message}`, error ?? ''));
    for (const warning of this.config.warnings) {
      if (warning.includes('REDIS_REPLICA_URL')) this.warn(warning);
    }
    this.where = redactUrl(url);
    this.primary = connect(url, {
      commandTimeoutMs: options.writeTimeoutMs ?? 5_000,
      settings: options.connection,
      onError: (error) => this.connectionError('primary', error),
    });
    // Through a proxy (or Fly's network) a lost server shows as a closed connection, not an error.
    this.primary.on('reconnecting', () => this.primaryLost(new Error('the connection closed')));
    this.primary.on('ready', () => {
      if (!this.primaryDown) return;
      this.primaryDown = false;
      this.warn(`The primary Redis (${this.where}) is reachable again.`);
    });
    this.replica = replicaUrl
      ? connect(replicaUrl, {
          // A replica that hangs must not hang reads: give up and read the primary.
          commandTimeoutMs: options.replicaTimeoutMs ?? 1_000,
          connectTimeoutMs: 2_000,
          settings: options.connection,
          onError: (error) => this.connectionError('replica', error),
        })
      : null;
    let route: ReplicaRoute | null = null;
    const histories = new Histories({
      replicaUrl,
      connection: options.connection,
      primaryInfo: () => this.primaryInfo(),
      replicaInfo: this.replica
        ? async () => {
            const replica = this.replica as Redis;
            await ready(replica);
            return replica.info('replication');
          }
        : null,
      // The poller's connection is the sentinel of the replica's process.
      events: {
        onConnect: (runId) => route?.health.connected(runId),
        onLost: (error) => route?.health.lost(error),
      },
      onChange: (from, to) =>
        route?.tracker.reset(new Error(`the replication history changed (${from} to ${to})`)),
    });
    this.histories = histories;
    route = replicaUrl
      ? new ReplicaRoute({
          settings: this.config,
          poll: histories.poll,
          key: histories,
          primaryPosition: () => histories.primaryOffset(),
          name: `the Redis replica in ${region}`,
          where: redactUrl(replicaUrl),
          fallback: 'shared-store reads go to the primary',
          warn: this.warn,
        })
      : null;
    this.route = route;
    this.telemetry = new SourceTelemetry({
      system: 'redis',
      region: region ?? 'local',
      replicaUsable: route ? () => route?.usable() ?? false : undefined,
    });
    histories.warm();
  }

  /** The replay tracker of this region's replica (`null` without one). */
  get tracker(): ReplayTracker | null {
    return this.route?.tracker ?? null;
  }

  /**
   * Runs any command, routed by what Redis's command table says it is: read-only commands on
   * this region's replica (after waiting for this context's writes), everything else on the
   * primary (recording its replication offset). Resolves with the reply as ioredis gives it.
   */
  call<T = unknown>(
    command: string,
    args: readonly RedisArg[] = [],
    options?: StoreCommandOptions,
  ): Promise<T> {
    let kind: ReturnType<typeof commandKind>;
    try {
      kind = commandKind(command, args);
    } catch (error) {
      return Promise.reject(error);
    }
    if (kind === 'write') return this.write([[command, ...args]], options).then((r) => r[0] as T);
    return this.read<T>(command, args, options);
  }

  /** `GET`, from the local replica. */
  get(key: string): Promise<string | null> {
    return this.call('get', [key]);
  }

  /** `MGET`, from the local replica. */
  mget(keys: readonly string[]): Promise<(string | null)[]> {
    return this.call('mget', keys);
  }

  /** `HGETALL`, from the local replica. */
  hgetall(key: string): Promise<Record<string, string>> {
    return this.call('hgetall', [key]);
  }

  /** `SET`, with an expiry in milliseconds if `ttlMs` is given. */
  set(
    key: string,
    value: RedisArg,
    options: StoreCommandOptions & { ttlMs?: number } = {},
  ): Promise<'OK'> {
    const args: RedisArg[] = [key, value];
    if (options.ttlMs !== undefined) args.push('PX', positiveInteger('ttlMs', options.ttlMs));
    return this.call('set', args, options);
  }

  /** `DEL`: resolves with how many keys were removed. */
  del(keys: string | readonly string[], options?: StoreCommandOptions): Promise<number> {
    return this.call('del', typeof keys === 'string' ? [keys] : keys, options);
  }

  /** `INCRBY` (default 1): resolves with the new value. */
  incr(key: string, options: StoreCommandOptions & { by?: number } = {}): Promise<number> {
    return this.call('incrby', [key, options.by ?? 1], options);
  }

  /** `HSET` of several fields. */
  hset(
    key: string,
    fields: Readonly<Record<string, RedisArg>>,
    options?: StoreCommandOptions,
  ): Promise<number> {
    return this.call('hset', [key, ...Object.entries(fields).flat()], options);
  }

  /** `PEXPIRE`: resolves with 1 if the key exists. */
  expire(key: string, ttlMs: number, options?: StoreCommandOptions): Promise<number> {
    return this.call('pexpire', [key, positiveInteger('ttlMs', ttlMs)], options);
  }

  /**
   * Runs `commands` atomically on the primary (MULTI/EXEC), with the offset captured in the
   * same round trip. Resolves with `[error, reply]` per command, as ioredis's `multi().exec()`:
   * Redis runs the others even when one fails.
   *
   * @example
   * await store.transaction([['incr', 'topics'], ['lpush', 'recent', id]]);
   */
  async transaction(
    commands: readonly RedisCommand[],
    options?: StoreCommandOptions,
  ): Promise<[Error | null, unknown][]> {
    if (commands.length === 0) return [];
    for (const [name, ...args] of commands) commandKind(name, args);
    const replies = await this.write([['multi'], ...commands, ['exec']], options);
    // EXEC answers with each command's reply, an error among them where one failed.
    return (replies.at(-1) as unknown[]).map((reply) =>
      reply instanceof Error ? [reply, null] : [null, reply],
    );
  }

  /** Closes every connection. */
  async end(): Promise<void> {
    this.ended = true;
    this.route?.close();
    this.telemetry.close();
    this.histories.close();
    this.replica?.disconnect();
    await this.primary.quit().catch(() => this.primary.disconnect());
  }

  stats(): SharedStoreStats {
    const route = this.route?.stats();
    return {
      replicaReads: route?.replicaReads ?? 0,
      primaryReads: (route?.primaryReads ?? 0) + this.counters.primaryReads,
      writes: this.counters.writes,
      waitTimeouts: route?.waitTimeouts ?? 0,
      replicaFailures: route?.replicaFailures ?? 0,
      replicaRestarts: route?.replicaRestarts ?? 0,
      historyChanges: this.histories.changes,
      tracker: route?.tracker ?? null,
    };
  }

  /**
   * The name of this store in consistency contexts and tokens: `redis:` and the replication
   * id of the history its offsets belong to. It changes when that history does (the primary
   * restarted without its replication state, a failover); positions under an older key are
   * then never waited on. Checked again at most once a second.
   */
  sourceKey(): Promise<string> {
    return this.histories.get();
  }

  /**
   * Resolves once this region's replica has processed `offset` of the current history (at
   * once where reads go to the primary): what the HTTP layer uses to honour a client's token.
   * A replica that cannot be asked, or follows another history, rejects with
   * `ReplicaUnavailableError` and is taken out of use for `REGIONAL_REPLICA_RETRY_MS`.
   */
  waitFor(offset: bigint, timeoutMs: number): Promise<number> {
    const route = this.route;
    if (!route) return Promise.resolve(0);
    return route.waitFor(offset, timeoutMs).catch((error: unknown) => {
      if (error instanceof ReplicaUnavailableError) this.replicaFailed(error);
      throw error;
    });
  }

  /** True if this region's replica is known to have `offset` already (always, without a replica). */
  hasReplayed(offset: bigint): boolean {
    return !this.route || this.route.hasReplayed(offset);
  }

  /** Sends `commands` to the primary in one round trip, with the offset after them when awaited. */
  private async write(
    commands: readonly RedisCommand[],
    options: StoreCommandOptions | undefined,
  ): Promise<unknown[]> {
    const context = currentContext();
    // Fire-and-forget writes (`await: false`, detached code) neither wait nor replay a read request.
    const capture = context.startWrite(options?.await !== false) && this.config.mode === 'multi';
    try {
      await ready(this.primary);
    } catch (error) {
      this.primaryLost(error as Error);
      throw new RedisPrimaryUnavailableError(this.where, 'write', false, { cause: error });
    }
    const pipeline = capture ? [...commands, ['info', 'replication']] : commands;
    let replies: [Error | null, unknown][];
    try {
      replies = (await this.primary.pipeline(pipeline as string[][]).exec()) ?? [];
    } catch (error) {
      // The connection went away between the check above and the send.
      throw this.writeError(error as Error);
    }
    const values: unknown[] = [];
    for (const [error, value] of replies.slice(0, commands.length)) {
      if (error) throw this.writeError(error);
      values.push(value);
    }
    this.counters.writes++;
    this.telemetry.routed('primary', 'write');
    if (capture) {
      const [error, info] = replies[commands.length] ?? [new Error('no reply')];
      // Applied, but with no offset this context could not read it back: say so.
      if (error)
        throw new RedisPrimaryUnavailableError(this.where, 'write', true, { cause: error });
      this.observe(context, info as string);
    }
    return values;
  }

  private observe(context: ConsistencyContext, info: string): void {
    const { replid, offset } = parseReplicationInfo(info);
    context.observe(this.histories.confirm(replid), offset);
  }

  private writeError(error: Error): Error {
    const failure = connectionFailure(error);
    if (!failure) return error;
    return new RedisPrimaryUnavailableError(this.where, 'write', failure === 'in-flight', {
      cause: error,
    });
  }

  private read<T>(
    command: string,
    args: readonly RedisArg[],
    options: StoreCommandOptions | undefined,
  ): Promise<T> {
    const route = this.route;
    if (options?.on === 'primary' || this.config.mode === 'single' || !route)
      return this.readOnPrimary<T>(command, args);
    const context = currentContext();
    // A write of an earlier history: the replica may not have it, the primary has what survived.
    if (this.histories.previousIn(context)) return this.readOnPrimary<T>(command, args);
    const plan = route.plan(context);
    if (plan === 'replica') return this.readOnReplica<T>(command, args);
    if (plan === 'primary') return this.readOnPrimary<T>(command, args);
    // No read checks the replica in its own round trip here: wait, within the bound.
    return route
      .choose(context)
      .then((target) =>
        target === 'replica'
          ? this.readOnReplica<T>(command, args)
          : this.readOnPrimary<T>(command, args),
      );
  }

  /**
   * A read on the primary. Where this region has a replica, the primary's offset after it comes
   * in the same round trip and is recorded: later reads on the replica must show no less.
   */
  private async readOnPrimary<T>(command: string, args: readonly RedisArg[]): Promise<T> {
    const context = currentContext();
    const record = this.route !== null && !context.detached;
    try {
      await ready(this.primary);
      let value: T;
      if (record) {
        const replies = (await this.primary
          .pipeline([[command, ...args] as string[], ['info', 'replication']])
          .exec()) as [Error | null, unknown][];
        const [error, reply] = replies[0] ?? [new Error('no reply')];
        if (error) throw error;
        value = reply as T;
        const [infoError, info] = replies[1] ?? [new Error('no reply')];
        if (!infoError) this.observe(context, info as string);
      } else {
        value = (await this.primary.call(command, ...args)) as T;
      }
      if (this.route) this.route.served('primary');
      else this.counters.primaryReads++;
      this.telemetry.routed('primary', fallbackReason(this.route));
      return value;
    } catch (error) {
      if (!connectionFailure(error)) throw error;
      throw new RedisPrimaryUnavailableError(this.where, 'read', true, { cause: error });
    }
  }

  private async readOnReplica<T>(command: string, args: readonly RedisArg[]): Promise<T> {
    const replica = this.replica as Redis;
    try {
      if (replica.status !== 'ready') await ready(replica);
      const value = (await replica.call(command, ...args)) as T;
      this.route?.served('replica');
      this.telemetry.routed('replica', 'read');
      return value;
    } catch (error) {
      if (!connectionFailure(error)) throw error;
      this.replicaFailed(error);
      return this.readOnPrimary<T>(command, args);
    }
  }

  private async primaryInfo(): Promise<string> {
    await ready(this.primary);
    return this.primary.info('replication');
  }

  /**
   * Sends reads to the primary for `replicaRetryMs`, then tries the replica again; what the
   * replica was known to have processed is forgotten (it may be restarting).
   */
  private replicaFailed(error: unknown): void {
    if (this.ended) return;
    this.route?.failed(error);
  }

  private connectionError(which: 'primary' | 'replica', error: Error): void {
    if (this.ended) return;
    if (which === 'replica') this.replicaFailed(error);
    else this.primaryLost(error);
  }

  /** Says once per outage that the primary is unreachable (ioredis reports every retry). */
  private primaryLost(error: Error): void {
    if (this.ended || this.primaryDown) return;
    this.primaryDown = true;
    this.warn(
      `The primary Redis (${this.where}) is unreachable (${error.message}): shared-store writes fail until it is back.`,
      error,
    );
  }
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value <= 0)
    throw new RangeError(`${name} must be a whole number of milliseconds > 0, got ${value}`);
  return value;
}
