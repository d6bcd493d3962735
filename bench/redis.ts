/**
 * `npm run bench -- redis`: Regional Redis from a replica region (syd, 50 ms one way from the
 * primary in iad; cdg 40 ms one way), on real redis-server processes.
 *
 * - localReadP50Ms / primaryReadP50Ms: a shared-store GET served by the syd replica, and the
 *   same GET sent to the primary from syd.
 * - writeP50Ms / writeNoAwaitP50Ms: a write with its offset captured (pipelined with INFO
 *   replication), and one with `{ await: false }`: capturing costs no extra round trip.
 * - waitOverheadMs p50/p99: after a write, how long the read waited beyond the moment the syd
 *   replica had actually processed the write's offset (seen by an independent observer polling
 *   the replica back to back).
 * - staleReads: write-then-read in one context, 1000 times; staleReadsWithoutWaiting: the same
 *   reading the replica directly. Both also with replication 5 ms behind the answers.
 * - trackerQueriesPerPoll: offset queries that reached the replica per poll, 10,000 waiters.
 * - purgeP50Ms: from a purge issued in cdg until the key is gone from each region's cache.
 */
import { Redis } from 'ioredis';
import { currentContext, withContext } from '../src/core/context.js';
import { RegionalCache } from '../src/redis/cache.js';
import { parseReplicationInfo } from '../src/redis/replication-info.js';
import { SharedStore } from '../src/redis/store.js';
import { LocalCluster } from '../src/testing/cluster.js';
import { LatencyProxy } from '../src/testing/link/latency-proxy.js';
import { countStaleReads } from '../test/support/consistency.js';
import { redisOptions, withPort } from '../test/support/redis-cluster.js';
import { median, percentile, printTable, progress, round, writeResults } from './support/report.js';

const ONE_WAY_MS = 50;
const REGIONS = ['iad', 'cdg', 'syd'] as const;

async function timed(n: number, fn: (i: number) => Promise<unknown>): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const started = performance.now();
    await fn(i);
    times.push(performance.now() - started);
  }
  return times;
}

/** Polls the replica back to back, recording when each offset (of one history) was first seen. */
function startObserver(url: string) {
  const samples: { at: number; replid: string; offset: bigint }[] = [];
  const client = new Redis(url);
  let running = true;
  const done = (async () => {
    while (running) {
      const sent = performance.now();
      const info = parseReplicationInfo(await client.info('replication'));
      // The server read its offset somewhere between sending and receiving.
      samples.push({
        at: (sent + performance.now()) / 2,
        replid: info.replid,
        offset: info.offset,
      });
    }
    client.disconnect();
  })();
  return {
    /** Estimated moment the replica processed `offset`: between the last poll short of it and the first at or past it. */
    reachedAt(replid: string, offset: bigint): number | null {
      const index = samples.findIndex((s) => s.replid === replid && s.offset >= offset);
      if (index <= 0) return null;
      return ((samples[index - 1]?.at as number) + (samples[index]?.at as number)) / 2;
    },
    async stop() {
      running = false;
      await done;
    },
  };
}

export async function run(): Promise<void> {
  progress('starting iad (primary), cdg and syd with Redis; syd 50 ms one way, cdg 40 ms');
  const cluster = await LocalCluster.start({
    temporary: true,
    regions: [...REGIONS],
    rttMs: { syd: 2 * ONE_WAY_MS, cdg: 80 },
    redis: true,
  });
  const closers: (() => Promise<unknown>)[] = [];
  try {
    const store = (
      region: string,
      extra: Partial<ConstructorParameters<typeof SharedStore>[0]> = {},
    ) => {
      const s = new SharedStore({
        ...redisOptions(cluster, region),
        onWarning: () => {},
        ...extra,
      });
      closers.push(() => s.end());
      return s;
    };
    const syd = store('syd');
    const replica = syd.replica as Redis;
    await syd.set('bench:key', 'x'.repeat(100));
    for (let i = 0; i < 50; i++) await syd.get('bench:key'); // warm up

    progress('reads: 1000 from the syd replica, 50 from the primary');
    const localReads = await timed(1000, () => syd.get('bench:key'));
    const primaryReads = await timed(50, () => syd.call('get', ['bench:key'], { on: 'primary' }));

    progress('writes: 50 with the offset captured, 50 with { await: false }');
    const writes = await timed(50, (i) => withContext(() => syd.set('bench:w', String(i))));
    const writesNoAwait = await timed(50, (i) => syd.set('bench:w', String(i), { await: false }));

    progress('wait overhead: 300 writes then waits, against an observer polling the replica');
    const observer = startObserver(cluster.redis.serverUrl('syd', 'replica'));
    const waits: { replid: string; offset: bigint; ackAt: number; resolvedAt: number }[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 10 }, async () => {
        while (next < 300) {
          const id = next++;
          await withContext(async () => {
            await syd.incr(`bench:wait:${id % 50}`);
            const [key, offset] = currentContext().entries()[0] as [string, bigint];
            const ackAt = performance.now();
            await syd.waitFor(offset, 5_000);
            waits.push({
              replid: key.slice('redis:'.length),
              offset,
              ackAt,
              resolvedAt: performance.now(),
            });
          });
        }
      }),
    );
    await new Promise((resolve) => setTimeout(resolve, 50));
    await observer.stop();
    const overheads: number[] = [];
    let unobserved = 0;
    for (const w of waits) {
      const reachedAt = observer.reachedAt(w.replid, w.offset);
      if (reachedAt === null) unobserved++;
      else overheads.push(Math.max(0, w.resolvedAt - reachedAt));
    }
    const ackToReadable = waits.map((w) => w.resolvedAt - w.ackAt);

    progress('stale reads: 1000 write-then-read with Regional, 2000 reading the replica directly');
    const staleReads = await countStaleReads(
      1000,
      (id) => syd.incr(`bench:stale:${id}`),
      async (id) => Number(await syd.get(`bench:stale:${id}`)),
    );
    const staleReadsWithoutWaiting = await countStaleReads(
      2000,
      (id) => syd.incr(`bench:stale:${id}`),
      async (id) => Number(await replica.get(`bench:stale:${id}`)),
    );
    progress('the same with replication 5 ms behind the answers');
    const replication = cluster.redis.replicationProxy('syd');
    replication.setDelay(ONE_WAY_MS + 5);
    const staleReadsLagging = await countStaleReads(
      1000,
      (id) => syd.incr(`bench:lag:${id}`),
      async (id) => Number(await syd.get(`bench:lag:${id}`)),
    );
    const staleReadsWithoutWaitingLagging = await countStaleReads(
      1000,
      (id) => syd.incr(`bench:lag:${id}`),
      async (id) => Number(await replica.get(`bench:lag:${id}`)),
    );
    replication.setDelay(ONE_WAY_MS);

    progress('tracker cost: 10,000 concurrent waiters, counted at the wire');
    const replicaUrl = cluster.redis.serverUrl('syd', 'replica');
    const counter = new LatencyProxy({
      name: 'count',
      targetPort: Number(new URL(replicaUrl).port),
      oneWayMs: 0,
    });
    await counter.listen();
    closers.push(() => counter.close());
    const counted = store('syd', { replicaUrl: withPort(replicaUrl, counter.port) });
    const target = await withContext(async () => {
      await counted.set('bench:many', '1');
      await counted.get('bench:many');
      await cluster.redis.pauseReplication('syd');
      await counted.set('bench:many', '2');
      return (currentContext().entries()[0] as [string, bigint])[1];
    });
    counter.resetStats();
    const pollsBefore = counted.stats().tracker?.polls ?? 0;
    const many = Array.from({ length: 10_000 }, () => counted.waitFor(target, 30_000));
    await new Promise((resolve) => setTimeout(resolve, 200));
    await cluster.redis.resumeReplication('syd');
    await Promise.all(many);
    const trackerPolls = (counted.stats().tracker?.polls ?? 0) - pollsBefore;
    const trackerQueriesPerPoll = counter.stats().roundTrips / trackerPolls;

    progress('purges: 30 issued in cdg, timed until gone from each region’s cache');
    const caches: Record<string, RegionalCache> = {};
    const watchers: Record<string, Redis> = {};
    for (const region of REGIONS) {
      const cache = new RegionalCache({ store: store(region), onWarning: () => {} });
      closers.push(() => cache.close());
      await cache.ready();
      caches[region] = cache;
      watchers[region] = new Redis(cluster.redis.serverUrl(region, 'cache'));
      closers.push(async () => watchers[region]?.disconnect());
    }
    // One purge first, untimed: it opens cdg's connection to the primary through the link.
    // Every round purges a key of its own, so a purge still travelling cannot end the next round.
    await caches.cdg?.delete('bench:purged:warm-up');
    const purgeTimes: Record<string, number[]> = { iad: [], cdg: [], syd: [] };
    for (let round = 0; round < 30; round++) {
      const key = `bench:purged:${round}`;
      for (const region of REGIONS) await caches[region]?.set(key, round);
      const started = performance.now();
      const arrivals = REGIONS.map(async (region) => {
        const watcher = watchers[region] as Redis;
        while (await watcher.exists(`cache:k:${key}`)) {
          if (performance.now() - started > 10_000)
            throw new Error(`purge never reached ${region}`);
        }
        purgeTimes[region]?.push(performance.now() - started);
      });
      await caches.cdg?.delete(key);
      await Promise.all(arrivals);
    }

    const purgeP50Ms = Object.fromEntries(
      REGIONS.map((r) => [r, round(median(purgeTimes[r] ?? []))]),
    );
    const results = {
      oneWayMs: { syd: ONE_WAY_MS, cdg: 40 },
      localReadP50Ms: round(median(localReads), 3),
      primaryReadP50Ms: round(median(primaryReads)),
      writeP50Ms: round(median(writes)),
      writeNoAwaitP50Ms: round(median(writesNoAwait)),
      waitOverheadMsP50: round(percentile(overheads, 50)),
      waitOverheadMsP99: round(percentile(overheads, 99)),
      waitOverheadMsMax: round(Math.max(...overheads)),
      waitSamples: overheads.length,
      waitSamplesWithoutObservation: unobserved,
      writeAckToReadableMsP50: round(percentile(ackToReadable, 50)),
      staleReads,
      staleReadsOf: 1000,
      staleReadsWithoutWaiting,
      staleReadsWithoutWaitingOf: 2000,
      replication5msBehind: {
        staleReads: staleReadsLagging,
        staleReadsWithoutWaiting: staleReadsWithoutWaitingLagging,
        of: 1000,
      },
      trackerWaiters: 10_000,
      trackerPolls,
      trackerQueriesPerPoll: round(trackerQueriesPerPoll, 3),
      purgeIssuedIn: 'cdg',
      purgeP50Ms,
      purgeP99Ms: Object.fromEntries(
        REGIONS.map((r) => [r, round(percentile(purgeTimes[r] ?? [], 99))]),
      ),
      goals: { waitOverheadMsP50: '<= 2', staleReads: '0', staleReadsWithoutWaiting: '> 0' },
    };

    printTable(`Regional Redis from syd (${ONE_WAY_MS} ms one way to the primary in iad)`, [
      ['metric', 'value', 'goal / note'],
      ['localReadP50Ms (syd replica)', results.localReadP50Ms, ''],
      ['primaryReadP50Ms (from syd)', results.primaryReadP50Ms, 'one round trip'],
      ['writeP50Ms (offset captured)', results.writeP50Ms, ''],
      ['writeNoAwaitP50Ms ({ await: false })', results.writeNoAwaitP50Ms, 'same round trip'],
      ['waitOverheadMsP50', results.waitOverheadMsP50, '<= 2'],
      ['waitOverheadMsP99', results.waitOverheadMsP99, ''],
      ['write ack -> readable p50 (ms)', results.writeAckToReadableMsP50, ''],
      ['staleReads (of 1000)', staleReads, '0'],
      ['staleReadsWithoutWaiting (of 2000)', staleReadsWithoutWaiting, '> 0'],
      ['  replication 5 ms behind: staleReads (of 1000)', staleReadsLagging, '0'],
      ['  replication 5 ms behind: without waiting', staleReadsWithoutWaitingLagging, '> 0'],
      ['trackerQueriesPerPoll (10,000 waiters)', results.trackerQueriesPerPoll, '1'],
    ]);
    printTable('Purge issued in cdg: until the key is gone from each region’s cache (30 purges)', [
      ['region', 'p50 ms', 'p99 ms', 'path'],
      ['cdg', purgeP50Ms.cdg ?? '', results.purgeP99Ms.cdg ?? '', 'local, at once'],
      ['iad', purgeP50Ms.iad ?? '', results.purgeP99Ms.iad ?? '', 'cdg -> primary (40 ms)'],
      [
        'syd',
        purgeP50Ms.syd ?? '',
        results.purgeP99Ms.syd ?? '',
        'cdg -> primary -> syd replica (40 + 50 ms)',
      ],
    ]);
    writeResults('redis', results);
  } finally {
    for (const close of closers.reverse()) await close().catch(() => {});
    await cluster.stop();
  }
}
