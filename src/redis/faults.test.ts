import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeWithRedis } from '../../test/support/redis.js';
import { redisOptions } from '../../test/support/redis-cluster.js';
import { currentContext, withContext } from '../core/context.js';
import { ReplicaUnavailableError } from '../core/errors.js';
import { LocalCluster } from '../testing/cluster.js';
import { RegionalCache } from './cache.js';
import { CachePurgeError, RedisPrimaryUnavailableError } from './errors.js';
import { SharedStore, type SharedStoreOptions } from './store.js';

const RTT_MS = 100;

describeWithRedis('Regional Redis when servers fail (50 ms one way)', () => {
  let cluster: LocalCluster;
  const stores: SharedStore[] = [];
  const caches: RegionalCache[] = [];
  const warnings: string[] = [];

  const syd = (options: Partial<SharedStoreOptions> = {}) => {
    const s = new SharedStore({
      ...redisOptions(cluster, 'syd'),
      onWarning: (message) => warnings.push(message),
      ...options,
    });
    stores.push(s);
    return s;
  };
  const sydCache = async (store: SharedStore) => {
    const c = new RegionalCache({ store, onWarning: (message) => warnings.push(message) });
    caches.push(c);
    await c.ready();
    return c;
  };
  /** Retries `fn` until it succeeds (a server coming back), for at most `ms`. */
  const eventually = async <T>(fn: () => Promise<T>, ms = 20_000): Promise<T> => {
    const deadline = Date.now() + ms;
    for (;;) {
      try {
        return await fn();
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await sleep(50);
      }
    }
  };

  beforeAll(async () => {
    cluster = await LocalCluster.start({
      temporary: true,
      regions: ['iad', 'syd'],
      rttMs: { syd: RTT_MS },
      redis: true,
    });
  });

  afterAll(async () => {
    for (const c of caches) await c.close();
    await Promise.all(stores.map((s) => s.end()));
    await cluster?.stop();
  });

  it('replica stopped: reads are served by the primary, and the replica is used again once back', async () => {
    const s = syd({ replicaRetryMs: 300 });
    await s.set('replica-down', 'before');
    await s.get('replica-down');
    await cluster.redis.server('syd', 'replica').stop();
    try {
      await withContext(async () => {
        await s.set('replica-down', 'during');
        expect(await s.get('replica-down')).toBe('during');
      });
      expect(await s.get('replica-down')).toBe('during');
      expect(s.stats().replicaFailures).toBeGreaterThanOrEqual(1);
      expect(s.stats().primaryReads).toBeGreaterThanOrEqual(2);
      // Whichever saw it first says so: a failed read, or the lost sentinel.
      expect(warnings.some((w) => /Redis replica in syd (failed|cannot be reached)/.test(w))).toBe(
        true,
      );
    } finally {
      await cluster.redis.server('syd', 'replica').start();
    }
    await cluster.redis.waitForSync(20_000);
    await sleep(350);
    const replicaReads = s.stats().replicaReads;
    await eventually(async () => {
      expect(await s.get('replica-down')).toBe('during');
      expect(s.stats().replicaReads).toBeGreaterThan(replicaReads);
    });
  });

  it('a replica killed and restarted is not read until it has processed what the primary had', async () => {
    const s = syd({ replicaRetryMs: 100 });
    await withContext(async () => {
      await s.set('restarted', 'seen');
      expect(await s.get('restarted')).toBe('seen');
      expect(s.tracker?.known).not.toBeNull();
      // It comes back empty (no persistence) and cannot resynchronise while its link is held.
      await cluster.redis.pauseReplication('syd');
      await cluster.redis.server('syd', 'replica').kill();
      await cluster.redis.server('syd', 'replica').start();
      await sleep(500); // past the failure window: only what was remembered could send reads there
      for (let i = 0; i < 10; i++) expect(await s.get('restarted')).toBe('seen');
    });
    expect(s.stats().replicaRestarts).toBe(1);
    await cluster.redis.resumeReplication('syd');
    await cluster.redis.waitForSync(20_000);
    const replicaReads = s.stats().replicaReads;
    await eventually(async () => {
      expect(await s.get('restarted')).toBe('seen');
      expect(s.stats().replicaReads).toBeGreaterThan(replicaReads);
    });
  });

  it('cache instance down: the cache misses and computes, logs once, and requests keep working', async () => {
    const s = syd();
    const cache = await sydCache(s);
    await cache.set('cached', 'value');
    expect(await cache.get('cached')).toBe('value');
    const warningsBefore = warnings.length;
    await cluster.redis.server('syd', 'cache').stop();
    try {
      let computes = 0;
      for (let i = 0; i < 5; i++) {
        const started = performance.now();
        expect(await cache.getOrCompute('computed', () => ++computes)).toBe(i + 1);
        expect(performance.now() - started).toBeLessThan(1_000);
      }
      expect(computes).toBe(5);
      expect(await cache.get('cached')).toBeUndefined();
      await cache.set('ignored', 1);
      await cache.delete('cached'); // dropped nowhere here, but the purge still goes out
      const about = warnings.slice(warningsBefore).filter((w) => /cache instance/.test(w));
      expect(about).toHaveLength(1);
      expect(about[0]).toMatch(/cannot be reached.*every get misses/);
      expect(cache.stats().errors).toBeGreaterThanOrEqual(5);
    } finally {
      await cluster.redis.server('syd', 'cache').start();
    }
    await eventually(async () => {
      await cache.set('again', 'works');
      expect(await cache.get('again')).toBe('works');
    });
    expect(warnings.some((w) => /cache instance .* is back/.test(w))).toBe(true);
  });

  it('primary stopped: writes fail with a clear error, cache and replica reads keep working, and nothing acknowledged is lost', async () => {
    const s = syd();
    const cache = await sydCache(s);
    const acknowledged: number[] = [];
    for (let i = 0; i < 20; i++) acknowledged.push(await s.incr('acked'));
    await s.set('last', String(acknowledged.at(-1)));
    await cluster.redis.waitForSync();
    await cache.set('cached', 'here');
    await cluster.redis.server('iad', 'primary').stop();
    try {
      // Sent before the close crossed the link: failed, its outcome unknown to this side.
      const early = s.incr('acked');
      await expect(early).rejects.toBeInstanceOf(RedisPrimaryUnavailableError);
      await expect(early).rejects.toThrow(/primary Redis .* (is unreachable|did not answer)/);
      // Once the connection is known to be down: failed at once, and known not to be applied.
      await eventually(async () => {
        expect(warnings.some((w) => /primary Redis .* is unreachable/.test(w))).toBe(true);
      });
      const started = performance.now();
      const write = s.incr('acked');
      await expect(write).rejects.toMatchObject({
        code: 'REGIONAL_REDIS_PRIMARY_UNAVAILABLE',
        sent: false,
      });
      await expect(write).rejects.toThrow(
        /primary Redis .* is unreachable .* the write was not sent/,
      );
      expect(performance.now() - started).toBeLessThan(1_000);
      // Reads keep working from the replica, and the cache from its own instance.
      expect(await s.get('last')).toBe(String(acknowledged.at(-1)));
      expect(await cache.get('cached')).toBe('here');
      expect(await cache.getOrCompute('computed-while-down', () => 'fine')).toBe('fine');
      // A purge is applied here, and says clearly that it could not reach the others.
      await expect(cache.delete('cached')).rejects.toBeInstanceOf(CachePurgeError);
      expect(await cache.get('cached')).toBeUndefined();
    } finally {
      await cluster.redis.server('iad', 'primary').start();
    }
    const next = await eventually(() => s.incr('acked'));
    expect(next).toBe((acknowledged.at(-1) as number) + 1);
    const primary = new Redis(cluster.redis.serverUrl('iad', 'primary'));
    try {
      expect(await primary.get('last')).toBe(String(acknowledged.at(-1)));
    } finally {
      primary.disconnect();
    }
    await cluster.redis.waitForSync(20_000);
  });

  it('a primary restarted into a new history: old positions are not waited on, and the replica’s old offsets are not trusted', async () => {
    const s = syd({ replicaRetryMs: 300 });
    await cluster.redis.waitForSync(20_000); // the replica follows the primary's history now
    // Old-history offsets well above where the new history will start.
    await s.set('filler', 'x'.repeat(10_000));
    const oldKey = await withContext(async () => {
      await s.set('history', 'old');
      await s.get('history');
      return (currentContext().entries()[0] as [string, bigint])[0];
    });
    // A context that wrote in the old history.
    const oldPositions = [[oldKey, 1n]] as const;

    // The syd replica keeps the old history: its replication is held while the primary restarts.
    await cluster.redis.pauseReplication('syd');
    try {
      await cluster.redis.server('iad', 'primary').stop();
      await cluster.redis.server('iad', 'primary').start();
      const { key, offset } = await withContext(async () => {
        await eventually(() => s.set('history', 'new'));
        const [k, o] = currentContext().entries()[0] as [string, bigint];
        // Read in the same context: the replica follows another history, so the primary answers.
        expect(await s.get('history')).toBe('new');
        return { key: k, offset: o };
      });
      expect(key).not.toBe(oldKey);
      expect(await s.sourceKey()).toBe(key);
      expect(s.stats().historyChanges).toBe(1);

      // What an offset-only poll (ROLE) would see: a replica "past" the write, yet without it.
      const replica = await cluster.redis.replication('syd', 'replica');
      expect(`redis:${replica.replid}`).toBe(oldKey);
      expect(replica.offset).toBeGreaterThanOrEqual(offset);
      expect(await (s.replica as Redis).get('history')).toBe('old');
      // Regional compares offsets only within one history: this is not "replayed".
      expect(s.hasReplayed(offset)).toBe(false);

      // A context holding a position of the old history reads the primary, without waiting,
      // even with the replica back in use (the failure above took it out for 300 ms).
      await sleep(350);
      await withContext(
        async () => {
          const started = performance.now();
          expect(await s.get('history')).toBe('new');
          expect(performance.now() - started).toBeLessThan(RTT_MS * 3);
        },
        { positions: oldPositions },
      );
    } finally {
      await cluster.redis.resumeReplication('syd');
    }
    await cluster.redis.waitForSync(20_000);
    await sleep(350);
    // Once the replica has resynchronised into the new history, it is waited on and read again.
    await eventually(async () => {
      await withContext(async () => {
        await s.set('history', 'newer');
        expect(await s.get('history')).toBe('newer');
      });
      expect(s.stats().tracker?.resolved).toBeGreaterThan(0);
    });
    expect(await (s.replica as Redis).get('history')).toBe('newer');
  });

  it('a waiter on a history the replica does not follow gets ReplicaUnavailableError, not a false success', async () => {
    const s = syd();
    await cluster.redis.waitForSync(20_000);
    await s.set('mismatch', '1');
    await cluster.redis.pauseReplication('syd');
    try {
      await cluster.redis.server('iad', 'primary').stop();
      await cluster.redis.server('iad', 'primary').start();
      const offset = await withContext(async () => {
        await eventually(() => s.set('mismatch', '2'));
        return (currentContext().entries()[0] as [string, bigint])[1];
      });
      await expect(s.waitFor(offset, 2_000)).rejects.toBeInstanceOf(ReplicaUnavailableError);
      await expect(s.waitFor(offset, 2_000)).resolves.toBe(0); // replica out of use: reads go to the primary
    } finally {
      await cluster.redis.resumeReplication('syd');
    }
    await cluster.redis.waitForSync(20_000);
  });
});
