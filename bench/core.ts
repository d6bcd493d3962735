/**
 * `npm run bench -- core`: what Regional's core costs and how close its waits are to the
 * replication lag itself, on a real primary + replica with 50 ms one way between them.
 *
 * - readOverheadPct: throughput lost by RegionalPool against a raw pg.Pool doing the same
 *   reads on the same replica (alternating rounds, median of each).
 * - waitOverheadMs p50/p99: after a write, how long a read waited beyond the moment the replica
 *   had actually replayed the write (seen by an independent observer polling back to back).
 * - trackerQueriesPerPoll: queries that reached the replica per tracker poll with 10,000
 *   concurrent waiters, counted at the wire.
 */
import pg from 'pg';
import { currentContext, withContext } from '../src/core/context.js';
import { formatLsn, type Lsn, parseLsn } from '../src/core/lsn.js';
import { ReplayTracker } from '../src/core/tracker.js';
import { RegionalPool } from '../src/pg/pool.js';
import { replayLsnPoller } from '../src/pg/replay-poller.js';
import { LocalCluster } from '../src/testing/cluster.js';
import { LatencyProxy } from '../src/testing/link/latency-proxy.js';
import { median, percentile, printTable, progress, round, writeResults } from './support/report.js';

const ONE_WAY_MS = 50;
const ROWS = 1000;

async function readThroughput(
  query: (id: number) => Promise<unknown>,
  durationMs: number,
  concurrency: number,
): Promise<{ perSecond: number; cpuMicrosPerRead: number }> {
  let done = 0;
  const cpu = process.cpuUsage();
  const started = performance.now();
  const deadline = started + durationMs;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, worker) => {
      for (let i = worker; performance.now() < deadline; i += concurrency) {
        await query((i % ROWS) + 1);
        done++;
      }
    }),
  );
  const elapsed = performance.now() - started;
  const used = process.cpuUsage(cpu);
  return { perSecond: (done / elapsed) * 1000, cpuMicrosPerRead: (used.user + used.system) / done };
}

/**
 * What RegionalPool's own routing costs per read, without I/O: the replica pool's `query` is
 * replaced by an already-resolved result, so only the routing code is timed.
 */
async function routingCost(pool: RegionalPool): Promise<number> {
  const replica = pool.replicaPool as pg.Pool & { query: unknown };
  const real = replica.query;
  const result = Promise.resolve({ rows: [], rowCount: 0, command: 'SELECT', oid: 0, fields: [] });
  replica.query = () => result;
  const sql = 'SELECT id, value, body FROM items WHERE id = $1';
  const n = 200_000;
  try {
    for (let i = 0; i < 20_000; i++) await pool.query(sql, [i]);
    const started = performance.now();
    for (let i = 0; i < n; i++) await pool.query(sql, [i]);
    const withRouting = performance.now() - started;
    const direct = performance.now();
    for (let i = 0; i < n; i++)
      await (replica.query as (c: unknown) => Promise<unknown>)({ text: sql, values: [i] });
    return ((withRouting - (performance.now() - direct)) * 1000) / n;
  } finally {
    replica.query = real;
  }
}

/** Polls the replica back to back, recording when each replay position was first seen. */
function startObserver(url: string) {
  const samples: { at: number; lsn: Lsn }[] = [];
  const client = new pg.Client(url);
  let running = true;
  const done = (async () => {
    await client.connect();
    while (running) {
      const sent = performance.now();
      const { rows } = await client.query<{ lsn: string }>(
        'SELECT pg_last_wal_replay_lsn()::text AS lsn',
      );
      const received = performance.now();
      // The server read the position somewhere between sending and receiving.
      samples.push({ at: (sent + received) / 2, lsn: parseLsn((rows[0] as { lsn: string }).lsn) });
    }
    await client.end();
  })();
  return {
    /** Estimated moment the replica replayed `lsn`: between the last poll short of it and the first at or past it. */
    replayedAt(lsn: Lsn): number | null {
      const index = samples.findIndex((s) => s.lsn >= lsn);
      if (index <= 0) return null;
      return (
        ((samples[index - 1] as { at: number }).at + (samples[index] as { at: number }).at) / 2
      );
    },
    async stop() {
      running = false;
      await done;
    },
  };
}

export async function run(): Promise<void> {
  progress('starting a primary (iad) and a replica (syd), 50 ms one way');
  const cluster = await LocalCluster.start({
    temporary: true,
    regions: ['iad', 'syd'],
    rttMs: { syd: 2 * ONE_WAY_MS },
  });
  const pools: { end(): Promise<void> }[] = [];
  try {
    await cluster.query(
      'iad',
      `CREATE TABLE items (id int PRIMARY KEY, value int NOT NULL, body text NOT NULL);
       INSERT INTO items SELECT g, 0, repeat('x', 100) FROM generate_series(1, ${ROWS}) g;`,
    );
    await cluster.waitForReplay('syd');
    const syd = cluster.endpoints('syd');
    const config = {
      primaryRegion: 'iad',
      region: 'syd',
      databaseUrl: syd.databaseUrl,
      replicaUrl: syd.replicaUrl,
      pool: { max: 20 },
    };

    // 1. Read overhead: the same replica reads through a raw pg.Pool and through RegionalPool,
    // in short alternating slices (order swapped every pair) so machine drift hits both alike.
    progress('read overhead: raw pg.Pool vs RegionalPool, 60 alternating pairs of 250 ms');
    const raw = new pg.Pool({ connectionString: syd.replicaUrl as string, max: 20 });
    const regional = new RegionalPool(config);
    pools.push(raw, regional);
    const sql = 'SELECT id, value, body FROM items WHERE id = $1';
    const concurrency = 16;
    const readRaw = (id: number) => raw.query(sql, [id]);
    const readRegional = (id: number) => regional.query(sql, [id]);
    await readThroughput(readRaw, 1000, concurrency); // warm up both
    await readThroughput(readRegional, 1000, concurrency);
    const ratios: number[] = [];
    const rates = { raw: [] as number[], regional: [] as number[] };
    const cpu = { raw: [] as number[], regional: [] as number[] };
    for (let pair = 0; pair < 60; pair++) {
      const first = pair % 2 === 0;
      const a = first ? await readThroughput(readRaw, 250, concurrency) : null;
      const b = await readThroughput(readRegional, 250, concurrency);
      const c = first
        ? (a as Awaited<ReturnType<typeof readThroughput>>)
        : await readThroughput(readRaw, 250, concurrency);
      ratios.push(b.perSecond / c.perSecond);
      rates.raw.push(c.perSecond);
      rates.regional.push(b.perSecond);
      cpu.raw.push(c.cpuMicrosPerRead);
      cpu.regional.push(b.cpuMicrosPerRead);
    }
    const rawRate = median(rates.raw);
    const regionalRate = median(rates.regional);
    const readOverheadPct = (1 - median(ratios)) * 100;
    const routingMicros = await routingCost(regional);

    // 2. Wait overhead: write, then wait for the replica; compare with when it really replayed.
    progress('wait overhead: 300 writes then reads, against an observer polling the replica');
    const observer = startObserver(syd.replicaUrl as string);
    const waitPool = new RegionalPool(config);
    pools.push(waitPool);
    const tracker = waitPool.tracker as ReplayTracker;
    // Warm up: connections to the primary and the tracker's to the replica.
    for (let i = 1; i <= 20; i++)
      await waitPool.query('UPDATE items SET value = value + 1 WHERE id = $1', [i]);
    await waitPool.query('SELECT 1');
    const waits: { lsn: Lsn; ackAt: number; resolvedAt: number }[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 10 }, async () => {
        while (next < 300) {
          const id = (next++ % ROWS) + 1;
          await withContext(async () => {
            await waitPool.query('UPDATE items SET value = value + 1 WHERE id = $1', [id]);
            const [, lsn] = currentContext().entries()[0] as [string, Lsn];
            const ackAt = performance.now();
            await tracker.waitFor(lsn, 5000);
            waits.push({ lsn, ackAt, resolvedAt: performance.now() });
          });
        }
      }),
    );
    await new Promise((resolve) => setTimeout(resolve, 50));
    await observer.stop();
    const waitOverheads: number[] = [];
    let unresolved = 0;
    for (const { lsn, resolvedAt } of waits) {
      const replayedAt = observer.replayedAt(lsn);
      if (replayedAt === null) unresolved++;
      else waitOverheads.push(Math.max(0, resolvedAt - replayedAt));
    }
    const lags = waits.map((w) => w.resolvedAt - w.ackAt);

    // 3. Queries per poll with 10,000 waiters, counted by a proxy in front of the replica.
    progress('tracker cost: 10,000 concurrent waiters');
    const proxy = new LatencyProxy({
      name: 'count',
      targetPort: Number(new URL(syd.replicaUrl as string).port),
      oneWayMs: 0,
    });
    await proxy.listen();
    const countedUrl = new URL(syd.replicaUrl as string);
    countedUrl.port = String(proxy.port);
    const poller = replayLsnPoller({ connectionString: countedUrl.toString() });
    const counted = new ReplayTracker({ name: 'counted', poll: poller, format: formatLsn });
    await counted.waitFor(0n, 5000);
    proxy.resetStats();
    const pollsBefore = counted.stats().polls;
    await cluster.pauseReplay('syd');
    await cluster.query('iad', 'UPDATE items SET value = value + 1 WHERE id = 1');
    const target = await cluster.primaryLsn();
    const waiters = Array.from({ length: 10_000 }, () => counted.waitFor(target, 30_000));
    await new Promise((resolve) => setTimeout(resolve, 200));
    await cluster.resumeReplay('syd');
    await Promise.all(waiters);
    const polls = counted.stats().polls - pollsBefore;
    const trackerQueriesPerPoll = proxy.stats().roundTrips / polls;
    await poller.close();
    await proxy.close();

    const results = {
      oneWayMs: ONE_WAY_MS,
      readOverheadPct: round(readOverheadPct),
      readOverheadPctQuartiles: [
        round((1 - percentile(ratios, 75)) * 100),
        round((1 - percentile(ratios, 25)) * 100),
      ],
      readsPerSecond: { rawPgPool: round(rawRate, 0), regionalPool: round(regionalRate, 0) },
      clientCpuMicrosPerRead: {
        rawPgPool: round(median(cpu.raw), 1),
        regionalPool: round(median(cpu.regional), 1),
      },
      routingMicrosPerQuery: round(routingMicros, 3),
      waitOverheadMsP50: round(percentile(waitOverheads, 50)),
      waitOverheadMsP99: round(percentile(waitOverheads, 99)),
      waitOverheadMsP90: round(percentile(waitOverheads, 90)),
      waitOverheadMsMax: round(Math.max(...waitOverheads)),
      waitSamples: waitOverheads.length,
      waitSamplesWithoutObservation: unresolved,
      writeAckToReadableMsP50: round(percentile(lags, 50)),
      trackerWaiters: 10_000,
      trackerPolls: polls,
      trackerQueriesPerPoll: round(trackerQueriesPerPoll, 3),
      goals: { readOverheadPct: '<= 3', waitOverheadMsP50: '<= 2', trackerQueriesPerPoll: '1' },
    };

    printTable(
      'Reads on the syd replica (60 alternating pairs of 250 ms, 16 concurrent; medians)',
      [
        ['', 'raw pg.Pool', 'RegionalPool', 'difference'],
        [
          'reads/s',
          round(rawRate, 0),
          round(regionalRate, 0),
          `${results.readOverheadPct}% fewer (paired median)`,
        ],
        [
          'client CPU µs/read',
          results.clientCpuMicrosPerRead.rawPgPool,
          results.clientCpuMicrosPerRead.regionalPool,
          '',
        ],
        ['routing logic µs/query (no I/O)', '-', results.routingMicrosPerQuery, ''],
      ],
    );
    printTable(
      `Waiting for replication (${ONE_WAY_MS} ms one way, ${waitOverheads.length} writes)`,
      [
        ['metric', 'value', 'goal'],
        ['readOverheadPct', results.readOverheadPct, '<= 3'],
        ['waitOverheadMsP50', results.waitOverheadMsP50, '<= 2'],
        ['waitOverheadMsP99', results.waitOverheadMsP99, ''],
        ['write ack -> readable p50 (ms)', results.writeAckToReadableMsP50, ''],
        ['trackerQueriesPerPoll (10,000 waiters)', results.trackerQueriesPerPoll, '1'],
        ['tracker polls for them', polls, ''],
      ],
    );
    writeResults('core', results);
  } finally {
    await Promise.all(pools.map((p) => p.end().catch(() => {})));
    await cluster.stop();
  }
}
