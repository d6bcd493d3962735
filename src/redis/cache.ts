import type { Redis } from 'ioredis';
import { redactUrl } from '../core/config.js';
import { loadRedisConfig, type RedisConfig, type RedisOptions } from './config.js';
import { type ConnectionSettings, connect, connectionFailure, ready } from './connection.js';
import { ApplyLater, type Purge, PurgeFollower, publishPurge } from './purge.js';
import type { SharedStore } from './store.js';

export interface RegionalCacheOptions extends RedisOptions {
  /** An already resolved configuration (otherwise read from options and the environment). */
  config?: RedisConfig;
  /**
   * The shared store whose replication carries purges to every region. Without one, a purge
   * reaches only this region's cache (and a warning says so).
   */
  store?: SharedStore | null;
  /** Prefix of every key this cache writes, so several caches can share an instance. Default `cache`. */
  namespace?: string;
  /** Expiry of entries set without `ttlMs`. Default 5 minutes. */
  defaultTtlMs?: number;
  /** A cache command with no answer after this long counts as a miss. Default 250 ms. */
  timeoutMs?: number;
  /** The stream purges travel in (on the primary, read from each replica). Default `regional:purge`. */
  purgeStream?: string;
  /** ioredis settings for the cache connection (TLS, username, …); not the URL. */
  connection?: ConnectionSettings;
  /** Receives warnings (cache unreachable, purges held up). Default: `console.warn`. */
  onWarning?: (message: string, error?: unknown) => void;
}

export interface CacheSetOptions {
  /** Expiry in milliseconds (default: the cache's `defaultTtlMs`); `0` keeps the entry until purged. */
  ttlMs?: number;
  /** Tags to purge the entry by, e.g. `topics`. */
  tags?: readonly string[];
}

/** Counters since the cache was made. */
export interface RegionalCacheStats {
  hits: number;
  misses: number;
  sets: number;
  /** Values computed by `getOrCompute` (one per key at a time in this process). */
  computes: number;
  /** Computed values not stored because a purge of them arrived while they were computed. */
  discarded: number;
  /** Commands that failed because the cache instance could not be reached (each a miss). */
  errors: number;
  /** Purges this process sent, and purges from any region it applied from the log. */
  purgesSent: number;
  purgesApplied: number;
  /** Times a region that missed purges dropped its whole namespace. */
  resyncs: number;
  /** Milliseconds between the last applied purge from another region being issued and applied here. */
  lastPurgeLagMs: number | null;
}

interface Flight {
  promise: Promise<unknown>;
  tags: readonly string[];
  invalidated: boolean;
}

type CacheCommands = {
  regionalCacheSet(...args: (string | number)[]): Promise<number>;
  regionalCachePurge(...args: (string | number)[]): Promise<number>;
};

// Set an entry and add it to its tags' sets; a tag set lives as long as its longest entry.
const SET_SCRIPT = `
local ttl = tonumber(ARGV[2])
if ttl > 0 then redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl) else redis.call('SET', KEYS[1], ARGV[1]) end
for i = 2, #KEYS do
  local existed = redis.call('EXISTS', KEYS[i]) == 1
  redis.call('SADD', KEYS[i], KEYS[1])
  if ttl == 0 then redis.call('PERSIST', KEYS[i])
  else
    local left = redis.call('PTTL', KEYS[i])
    if not existed or (left >= 0 and left < ttl) then redis.call('PEXPIRE', KEYS[i], ttl) end
  end
end
return 1`;

// Drop entries (the first ARGV[1] keys) and every entry of the tag sets (the other keys), atomically.
const PURGE_SCRIPT = `
local n = tonumber(ARGV[1])
local removed = 0
for i = 1, n do removed = removed + redis.call('UNLINK', KEYS[i]) end
for i = n + 1, #KEYS do
  for _, member in ipairs(redis.call('SMEMBERS', KEYS[i])) do removed = removed + redis.call('UNLINK', member) end
  redis.call('UNLINK', KEYS[i])
end
return removed`;

/**
 * A cache in this region's own Redis instance (`REDIS_CACHE_URL`, not replicated: an entry is
 * seen only in the region that wrote it), with purges that reach every region.
 *
 * - `getOrCompute` computes a missing value once per key in this process however many callers
 *   ask at once (other processes may each compute it once too), and does not store a value a
 *   purge of it overtook while it was computed.
 * - `delete` and `purgeTags` drop the entries here at once and append the purge to a log on the
 *   primary Redis (a stream, so it travels by the shared store's replication and needs no
 *   server of its own); every region's caches read the log from their local replica and drop
 *   the entries too. A region that was away catches up from where it stopped; one away so long
 *   that the log was trimmed past it drops its whole namespace.
 * - An unreachable cache instance is a miss (logged once): requests keep working.
 *
 * Entries are not read-your-writes: a purge reaches other regions after about one replication
 * delay, and a value computed elsewhere from a replica that had not caught up may be stored
 * after it; `ttlMs` bounds how long such an entry lives.
 *
 * @example
 * import { RegionalCache, SharedStore } from 'regional/redis';
 * const cache = new RegionalCache({ store: new SharedStore() }); // REDIS_CACHE_URL
 * const topics = await cache.getOrCompute('topics', () => db.listTopics(), { ttlMs: 60_000, tags: ['topics'] });
 * await cache.purgeTags('topics'); // after a new topic: gone from every region's cache
 */
export class RegionalCache {
  readonly config: RedisConfig;
  /** The connection to this region's cache instance (`null` without one: every get misses). */
  readonly client: (Redis & CacheCommands) | null;
  readonly namespace: string;
  private readonly store: SharedStore | null;
  private readonly defaultTtlMs: number;
  private readonly purgeStream: string;
  private readonly follower: PurgeFollower | null;
  private readonly inflight = new Map<string, Flight>();
  /** Computed values being stored, by key: a lookup of the key waits for its store first. */
  private readonly storing = new Map<string, Promise<void>>();
  private readonly warn: (message: string, error?: unknown) => void;
  private down = false;
  private readonly counters: RegionalCacheStats = {
    hits: 0,
    misses: 0,
    sets: 0,
    computes: 0,
    discarded: 0,
    errors: 0,
    purgesSent: 0,
    purgesApplied: 0,
    resyncs: 0,
    lastPurgeLagMs: null,
  };

  constructor(options: RegionalCacheOptions = {}) {
    this.store = options.store ?? null;
    this.config = options.config ?? this.store?.config ?? loadRedisConfig(options);
    this.warn =
      options.onWarning ?? ((message, error) => console.warn(`[regional] ${message}`, error ?? ''));
    this.namespace = options.namespace ?? 'cache';
    if (!/^[\w.-]+$/.test(this.namespace)) {
      throw new RangeError(
        `namespace must be letters, digits, "_", "." or "-", got "${this.namespace}"`,
      );
    }
    this.defaultTtlMs = options.defaultTtlMs ?? 300_000;
    this.purgeStream = options.purgeStream ?? 'regional:purge';
    const cacheUrl = this.config.cacheUrl;
    if (cacheUrl) {
      this.client = connect(cacheUrl, {
        commandTimeoutMs: options.timeoutMs ?? 250,
        connectTimeoutMs: 2_000,
        settings: options.connection,
        onError: (error) => this.unavailable(error),
      }) as Redis & CacheCommands;
      this.client.defineCommand('regionalCacheSet', { lua: SET_SCRIPT });
      this.client.defineCommand('regionalCachePurge', { lua: PURGE_SCRIPT });
      this.client.on('ready', () => this.available());
    } else {
      this.client = null;
      for (const warning of this.config.warnings)
        if (warning.includes('REDIS_CACHE_URL')) this.warn(warning);
    }
    // With one region, this region's cache is every cache.
    if (!this.store && this.config.mode === 'multi') {
      this.warn(
        `The regional cache "${this.namespace}" has no shared store: purges reach only this region's cache. Pass { store } to purge everywhere.`,
      );
    }
    this.follower =
      this.store && this.client
        ? new PurgeFollower({
            stream: this.purgeStream,
            replicaUrl: this.store.config.replicaUrl,
            primaryUrl: this.store.config.url as string,
            connection: options.connection,
            replicaRetryMs: this.config.replicaRetryMs,
            loadCursor: () => this.command((c) => c.get(this.cursorKey)),
            saveCursor: (cursor) => this.command((c) => c.set(this.cursorKey, cursor)),
            apply: (purges, cursor) => this.applyPurges(purges, cursor),
            resync: (reason) => this.resync(reason),
            onWarning: this.warn,
          })
        : null;
  }

  /** The cached value, or `undefined` on a miss (or when the cache instance cannot be reached). */
  async get<T = unknown>(key: string): Promise<T | undefined> {
    const text = this.client ? await this.command((c) => c.get(this.entryKey(key))) : null;
    if (text === null || text === undefined) {
      this.counters.misses++;
      return undefined;
    }
    this.counters.hits++;
    return JSON.parse(text) as T;
  }

  /** Stores `value` (as JSON) in this region's cache. A value of `undefined` is not stored. */
  async set(key: string, value: unknown, options: CacheSetOptions = {}): Promise<void> {
    const ttlMs = this.ttlOf(options);
    if (value === undefined || !this.client) return;
    const keys = [this.entryKey(key), ...(options.tags ?? []).map((tag) => this.tagKey(tag))];
    const done = await this.command((c) =>
      c.regionalCacheSet(keys.length, ...keys, JSON.stringify(value), ttlMs),
    );
    if (done !== null) this.counters.sets++;
  }

  /**
   * The cached value, or else what `compute` returns, stored for next time. Concurrent callers
   * for one key share one lookup and one computation in this process. A computed value is
   * returned at once and stored in the background (a failure to store is a warning); a caller
   * that comes while it is being stored looks it up once the store is done.
   */
  getOrCompute<T>(
    key: string,
    compute: () => T | Promise<T>,
    options: CacheSetOptions = {},
  ): Promise<T> {
    const existing = this.inflight.get(key);
    if (existing) return existing.promise as Promise<T>;
    try {
      this.ttlOf(options);
    } catch (error) {
      return Promise.reject(error);
    }
    const flight: Flight = {
      promise: Promise.resolve(),
      tags: options.tags ?? [],
      invalidated: false,
    };
    const storing = this.storing.get(key);
    flight.promise = (async () => {
      if (storing) await storing;
      const cached = await this.get<T>(key);
      if (cached !== undefined) return cached;
      this.counters.computes++;
      const value = await compute();
      // A purge overtook this computation: its value may predate what was purged.
      if (flight.invalidated) this.counters.discarded++;
      else this.storeInBackground(key, value, options);
      return value;
    })().finally(() => {
      if (this.inflight.get(key) === flight) this.inflight.delete(key);
    });
    this.inflight.set(key, flight);
    return flight.promise as Promise<T>;
  }

  private storeInBackground(key: string, value: unknown, options: CacheSetOptions): void {
    const store: Promise<void> = this.set(key, value, options)
      .catch((error: Error) =>
        this.warn(`The computed value of "${key}" could not be stored in the cache`, error),
      )
      .finally(() => {
        if (this.storing.get(key) === store) this.storing.delete(key);
      });
    this.storing.set(key, store);
  }

  private ttlOf(options: CacheSetOptions): number {
    const ttlMs = options.ttlMs ?? this.defaultTtlMs;
    if (!Number.isInteger(ttlMs) || ttlMs < 0)
      throw new RangeError(`ttlMs must be a whole number of milliseconds >= 0, got ${ttlMs}`);
    return ttlMs;
  }

  /**
   * Drops `keys` from this region's cache at once and from every other region's as the purge
   * arrives there. Rejects with `CachePurgeError` if the purge cannot reach the primary Redis
   * (the entries here are dropped all the same).
   */
  delete(keys: string | readonly string[]): Promise<void> {
    return this.purge(typeof keys === 'string' ? [keys] : [...keys], []);
  }

  /** Drops every entry set with one of `tags`, here at once and in every region; as {@link delete}. */
  purgeTags(tags: string | readonly string[]): Promise<void> {
    return this.purge([], typeof tags === 'string' ? [tags] : [...tags]);
  }

  /**
   * Resolves once this cache is connected and follows the purge log (at once without a shared
   * store); rejects after `timeoutMs` if it cannot yet (it keeps trying). For start-up and tests.
   */
  async ready(timeoutMs = 10_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new Error(
              `The regional cache "${this.namespace}" is not following purges after ${timeoutMs} ms (is Redis reachable?)`,
            ),
          ),
        timeoutMs,
      );
    });
    try {
      if (this.client) await Promise.race([ready(this.client).catch(() => {}), timeout]);
      await Promise.race([this.follower?.started, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  stats(): RegionalCacheStats {
    return { ...this.counters };
  }

  /** Stops following purges and closes the connection. */
  async close(): Promise<void> {
    await this.follower?.close();
    this.client?.disconnect();
  }

  private async purge(keys: string[], tags: string[]): Promise<void> {
    const purge: Purge = {
      namespace: this.namespace,
      keys,
      tags,
      region: this.config.region ?? 'local',
      at: Date.now(),
    };
    this.invalidateFlights(purge);
    await this.dropEntries([purge]);
    if (!this.store) return;
    await publishPurge(this.store.primary, this.purgeStream, purge);
    this.counters.purgesSent++;
  }

  private invalidateFlights(purge: Purge): void {
    if (this.inflight.size === 0) return;
    for (const [key, flight] of this.inflight) {
      if (purge.keys.includes(key) || flight.tags.some((tag) => purge.tags.includes(tag)))
        flight.invalidated = true;
    }
  }

  /** Drops the entries of `purges` here; resolves false if the cache could not be reached. */
  private async dropEntries(purges: Purge[], cursor?: string): Promise<boolean> {
    const keys = purges.flatMap((p) => p.keys.map((key) => this.entryKey(key)));
    const tagKeys = purges.flatMap((p) => p.tags.map((tag) => this.tagKey(tag)));
    if (!this.client) return true;
    const done = await this.command((c) => {
      const pipeline = c.pipeline();
      if (keys.length + tagKeys.length > 0) {
        (pipeline as unknown as CacheCommands).regionalCachePurge(
          keys.length + tagKeys.length,
          ...keys,
          ...tagKeys,
          keys.length,
        );
      }
      if (cursor) pipeline.set(this.cursorKey, cursor);
      return pipeline.exec().then((replies) => {
        const failed = replies?.find(([error]) => error)?.[0];
        if (failed) throw failed;
        return true;
      });
    });
    return done === true;
  }

  /** Called by the follower with purges from the log, in order. */
  private async applyPurges(purges: Purge[], cursor: string): Promise<void> {
    const ours = purges.filter((p) => p.namespace === this.namespace);
    for (const purge of ours) this.invalidateFlights(purge);
    if (!this.client) return;
    // Keep the follower's place until the cache has them: it retries.
    if (!(await this.dropEntries(ours, cursor)))
      throw new ApplyLater('the cache instance is unreachable');
    this.counters.purgesApplied += ours.length;
    const remote = ours.filter((p) => p.region !== (this.config.region ?? 'local'));
    const last = remote.at(-1);
    if (last && Number.isFinite(last.at)) this.counters.lastPurgeLagMs = Date.now() - last.at;
  }

  /** Drops every entry of this namespace: purges were missed. */
  private async resync(reason: string): Promise<void> {
    this.warn(`The regional cache "${this.namespace}" is dropped entirely: ${reason}.`);
    for (const flight of this.inflight.values()) flight.invalidated = true;
    const client = this.client as Redis;
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `${this.namespace}:*`, 'COUNT', 1000);
      if (keys.length > 0) await client.unlink(...keys);
      cursor = next;
    } while (cursor !== '0');
    this.counters.resyncs++;
  }

  /** Runs `fn` on the cache; `null` (a miss) when the instance cannot be reached. */
  private async command<T>(fn: (client: Redis & CacheCommands) => Promise<T>): Promise<T | null> {
    const client = this.client as Redis & CacheCommands;
    try {
      if (client.status !== 'ready') await ready(client);
      return await fn(client);
    } catch (error) {
      // An answer from the cache (a wrong type, a script error) is a bug to report, not a miss.
      if (!connectionFailure(error)) throw error;
      this.counters.errors++;
      this.unavailable(error as Error);
      return null;
    }
  }

  private unavailable(error: Error): void {
    if (this.down) return;
    this.down = true;
    this.warn(
      `The regional cache instance (${redactUrl(this.config.cacheUrl ?? '')}) cannot be reached (${error.message}): every get misses and values are computed until it is back.`,
      error,
    );
  }

  private available(): void {
    if (!this.down) return;
    this.down = false;
    this.warn(`The regional cache instance (${redactUrl(this.config.cacheUrl ?? '')}) is back.`);
  }

  private entryKey(key: string): string {
    return `${this.namespace}:k:${key}`;
  }

  private tagKey(tag: string): string {
    return `${this.namespace}:t:${tag}`;
  }

  private get cursorKey(): string {
    return `${this.namespace}:purge-cursor`;
  }
}
