import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { describeWithRedis } from '../../test/support/redis.js';
import { redisOptions } from '../../test/support/redis-cluster.js';
import { LocalCluster } from '../testing/cluster.js';
import { RegionalCache, type RegionalCacheOptions } from './cache.js';
import { SharedStore } from './store.js';

// One way: cdg 20 ms and syd 50 ms from the primary in iad.
const RTT = { cdg: 40, syd: 100, 'cdg-syd': 140 };
const REGIONS = ['iad', 'cdg', 'syd'] as const;

describeWithRedis('RegionalCache in three regions', () => {
  let cluster: LocalCluster;
  const stores: Record<string, SharedStore> = {};
  const opened: RegionalCache[] = [];
  const direct: Redis[] = [];
  const warnings: string[] = [];

  /** A cache for `region`, following purges through that region's shared store. */
  const cache = async (region: string, options: Partial<RegionalCacheOptions> = {}) => {
    const c = new RegionalCache({
      store: stores[region],
      onWarning: (message) => warnings.push(message),
      ...options,
    });
    opened.push(c);
    await c.ready();
    return c;
  };
  /** The cache instance of `region`, asked directly (not through a RegionalCache). */
  const instance = (region: string) => {
    const client = new Redis(cluster.redis.serverUrl(region, 'cache'));
    direct.push(client);
    return client;
  };
  /** Resolves with the milliseconds from `since` until `key` is gone from `region`'s cache instance. */
  const goneFrom = async (client: Redis, key: string, since: number, timeoutMs = 5_000) => {
    while (await client.exists(key)) {
      if (performance.now() - since > timeoutMs) throw new Error(`${key} still there`);
    }
    return performance.now() - since;
  };

  beforeAll(async () => {
    cluster = await LocalCluster.start({
      temporary: true,
      regions: [...REGIONS],
      rttMs: RTT,
      redis: true,
    });
    for (const region of REGIONS) {
      stores[region] = new SharedStore({
        ...redisOptions(cluster, region),
        onWarning: (m) => warnings.push(m),
      });
    }
  });

  afterAll(async () => {
    for (const c of opened) await c.close();
    for (const client of direct) client.disconnect();
    await Promise.all(Object.values(stores).map((s) => s.end()));
    await cluster?.stop();
  });

  it('gets, sets with a TTL and deletes, in the region’s own instance', async () => {
    const syd = await cache('syd');
    expect(await syd.get('missing')).toBeUndefined();
    await syd.set('user:1', { name: 'Ann', tags: ['a'] });
    expect(await syd.get('user:1')).toEqual({ name: 'Ann', tags: ['a'] });
    // Not replicated: the cdg cache does not see it.
    expect(await (await cache('cdg')).get('user:1')).toBeUndefined();
    await syd.set('short', 1, { ttlMs: 50 });
    expect(await syd.get('short')).toBe(1);
    await sleep(120);
    expect(await syd.get('short')).toBeUndefined();
    await syd.delete('user:1');
    expect(await syd.get('user:1')).toBeUndefined();
    await expect(syd.set('bad', 1, { ttlMs: -1 })).rejects.toThrow(/ttlMs must be/);
  });

  it('getOrCompute computes once per key under concurrent callers, then serves the cache', async () => {
    const syd = await cache('syd');
    let computes = 0;
    const compute = async () => {
      computes++;
      await sleep(30);
      return { topics: ['hello'] };
    };
    const values = await Promise.all(
      Array.from({ length: 100 }, () => syd.getOrCompute('topics:list', compute)),
    );
    expect(computes).toBe(1);
    expect(values.every((v) => v.topics[0] === 'hello')).toBe(true);
    expect(await syd.getOrCompute('topics:list', compute)).toEqual({ topics: ['hello'] });
    expect(computes).toBe(1);
    expect(syd.stats()).toMatchObject({ computes: 1, sets: 1 });
  });

  it('getOrCompute answers with the computed value even when it cannot be stored, and says so', async () => {
    const syd = await cache('syd');
    const before = warnings.length;
    // JSON cannot hold a BigInt: the store fails after the value is computed.
    const value = await syd.getOrCompute('unstorable', () => ({ n: 1n }));
    expect(value).toEqual({ n: 1n });
    await vi.waitFor(() =>
      expect(warnings.slice(before)).toEqual([
        'The computed value of "unstorable" could not be stored in the cache',
      ]),
    );
    expect(await syd.get('unstorable')).toBeUndefined();
    await expect(syd.getOrCompute('bad-ttl', () => 1, { ttlMs: -1 })).rejects.toThrow(
      /ttlMs must be a whole number of milliseconds >= 0, got -1/,
    );
  });

  it('a purge issued in cdg removes the key from the iad and syd caches', async () => {
    const caches = {
      iad: await cache('iad'),
      cdg: await cache('cdg'),
      syd: await cache('syd'),
    };
    const clients = { iad: instance('iad'), syd: instance('syd') };
    for (let round = 0; round < 3; round++) {
      // A key per round: a purge still travelling cannot end the next round's wait.
      const key = `purged:${round}`;
      for (const c of Object.values(caches)) await c.set(key, round);
      const started = performance.now();
      const arrivals = Promise.all([
        goneFrom(clients.iad, `cache:k:${key}`, started),
        goneFrom(clients.syd, `cache:k:${key}`, started),
      ]);
      await caches.cdg.delete(key);
      expect(await caches.cdg.get(key)).toBeUndefined();
      const [iad, syd] = await arrivals;
      // The purge travels cdg -> iad (the primary), then iad -> syd by replication.
      expect(iad).toBeGreaterThanOrEqual(RTT.cdg / 2 - 2);
      expect(syd).toBeGreaterThanOrEqual(RTT.cdg / 2 + RTT.syd / 2 - 2);
    }
    expect(caches.cdg.stats().purgesSent).toBe(3);
    expect(caches.syd.stats().lastPurgeLagMs).toBeGreaterThanOrEqual(RTT.cdg / 2 + RTT.syd / 2 - 2);
  });

  it('the same purge from a cache without the shared store leaves the other regions’ entries (the check can fail)', async () => {
    const local = await cache('cdg', { store: null, config: stores.cdg?.config });
    expect(warnings.some((w) => /purges reach only this region's cache/.test(w))).toBe(true);
    const syd = await cache('syd');
    await syd.set('not-purged', 1);
    await local.set('not-purged', 1);
    expect(await local.get('not-purged')).toBe(1);
    await local.delete('not-purged');
    expect(await local.get('not-purged')).toBeUndefined();
    await sleep(RTT['cdg-syd'] * 2);
    expect(await syd.get('not-purged')).toBe(1);
  });

  it('purges tags everywhere', async () => {
    const cdg = await cache('cdg');
    const syd = await cache('syd');
    await syd.set('topic:1', 'a', { tags: ['topics'] });
    await syd.set('topic:2', 'b', { tags: ['topics', 'home'] });
    await syd.set('user:9', 'c', { tags: ['users'] });
    const client = instance('syd');
    const started = performance.now();
    const gone = Promise.all([
      goneFrom(client, 'cache:k:topic:1', started),
      goneFrom(client, 'cache:k:topic:2', started),
    ]);
    await cdg.purgeTags('topics');
    await gone;
    expect(await syd.get('user:9')).toBe('c');
  });

  it('does not store a value whose purge overtook its computation', async () => {
    const cdg = await cache('cdg');
    const syd = await cache('syd');
    let release: () => void = () => {};
    const computing = syd.getOrCompute(
      'overtaken',
      () =>
        new Promise<string>((resolve) => {
          release = () => resolve('computed before the purge');
        }),
      { tags: ['overtaken-tag'] },
    );
    await sleep(20);
    const applied = syd.stats().purgesApplied;
    await cdg.purgeTags('overtaken-tag');
    // Wait until the purge has reached syd, then let the computation finish.
    while (syd.stats().purgesApplied === applied) await sleep(5);
    release();
    expect(await computing).toBe('computed before the purge');
    expect(await syd.get('overtaken')).toBeUndefined();
    expect(syd.stats().discarded).toBe(1);
  });

  it('a region whose caches were away catches up from where it stopped', async () => {
    const first = await cache('syd', { namespace: 'away' });
    await first.set('kept', 1);
    await first.set('dropped', 1);
    await first.close();
    await (await cache('cdg', { namespace: 'away' })).delete('dropped');
    await sleep(RTT.syd);
    const client = instance('syd');
    expect(await client.exists('away:k:dropped')).toBe(1); // nobody in syd applied it yet
    const again = await cache('syd', { namespace: 'away' });
    await goneFrom(client, 'away:k:dropped', performance.now());
    expect(await again.get('kept')).toBe(1);
    expect(again.stats().resyncs).toBe(0);
  });

  it('a region away so long that the log was trimmed past it drops its whole namespace', async () => {
    const first = await cache('syd', { namespace: 'trimmed' });
    await first.set('a', 1);
    await first.set('b', 2);
    await first.close();
    const cdg = await cache('cdg', { namespace: 'trimmed' });
    await cdg.delete('a');
    // The log keeps a bounded number of purges: trim everything, as a long absence would.
    await stores.iad?.call('xtrim', ['regional:purge', 'MAXLEN', 0]);
    await cluster.redis.waitForSync();
    const again = await cache('syd', { namespace: 'trimmed' });
    expect(again.stats().resyncs).toBe(1);
    expect(await again.get('a')).toBeUndefined();
    expect(await again.get('b')).toBeUndefined();
    expect(warnings.some((w) => /"trimmed" is dropped entirely/.test(w))).toBe(true);
  });
});
