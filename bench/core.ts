/**
 * `npm run bench -- core`: what Regional's drivers cost against the raw drivers they wrap, and
 * how close their waits are to the replication lag itself, on a real primary + replica with
 * 50 ms one way between them. Each driver (`pg`: RegionalPool over node-postgres; `postgres`:
 * RegionalPostgres over postgres.js) is measured against its own raw driver:
 *
 * - cpuMicrosPerRead / cpuOverheadPct: this process's CPU per replica read (the stable figure
 *   on a noisy machine), in slices whose order rotates every round; the overhead is the median
 *   of each round's ratio. pg is also measured with `queryTimeoutMs: 0`, as node-postgres's
 *   query timeout arms a timer per query.
 * - readOverheadPct: reads/s lost in the same rounds (median of each round's ratio).
 * - routingMicrosPerQuery: what routing adds per read, timed with the replica pool's `query`
 *   answering at once (no I/O): pg only, as postgres.js has no such seam. Both drivers report
 *   cpuDifferenceMicrosPerRead, the median difference of the paired CPU figures.
 * - waitOverheadMsP50/P99: after a write, how long the wait for the replica lasted beyond the
 *   moment it had actually replayed the write (seen by an observer polling back to back).
 * - writeRoundTrips: round trips on the syd→iad link for one single-statement write, counted
 *   at the link, raw and Regional (the commit position is read in the write's own round trip).
 * - trackerQueriesPerPoll: queries reaching the replica per poll with 10,000 waiters.
 * - otelCpuOverheadPct: pg reads' client CPU with an OpenTelemetry SDK registered (spans for
 *   every query, exported nowhere) against none, paired; otelSampledCpuOverheadPct the same
 *   with 10 % of traces sampled, otelWithoutStatementSpansCpuOverheadPct with a sampler that
 *   records no `regional.query` spans, otelMetricsOnlyCpuOverheadPct with metrics only;
 *   otelNoSdkOverheadPct: the routing's extra µs per query with
 *   `@opentelemetry/api` installed but no SDK (child processes with it hidden and not), as a
 *   share of a read's CPU.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import postgres from 'postgres';
import { currentContext, type Lsn, parseLsn, withContext } from '../src/core/index.js';
import { RegionalPool } from '../src/pg/index.js';
import { RegionalPostgres } from '../src/postgres/index.js';
import { LatencyProxy, LocalCluster } from '../src/testing/index.js';
import { noopSdk } from './support/otel.js';
import { type Compared, compare } from './support/paired.js';
import { median, percentile, printTable, progress, round, writeResults } from './support/report.js';
import { pgRoutingMicros } from './support/routing.js';

const ONE_WAY_MS = 50;
const ROWS = 1000;
const CONCURRENCY = 16;
const ROUNDS = 40;
const SLICE_MS = 250;
const WAIT_SAMPLES = 300;
const PAIRING = { concurrency: CONCURRENCY, rows: ROWS, rounds: ROUNDS, sliceMs: SLICE_MS };
const execFileAsync = promisify(execFile);
const SELECT_PG = 'SELECT id, value, body FROM items WHERE id = $1';
const UPDATE_PG = 'UPDATE items SET value = value + 1 WHERE id = $1';

/**
 * What OpenTelemetry costs RegionalPool's reads: paired slices with no SDK registered, with one
 * exporting nowhere, and with one sampling 10 % of traces (client CPU per read, each read in a
 * consistency context as behind the middleware); and, in processes of their own, the routing's
 * cost per query with `@opentelemetry/api` installed but no SDK, against without it.
 */
async function measureOtel(pool: RegionalPool, settings: Record<string, unknown>) {
  progress(`pg: OpenTelemetry: no SDK vs an SDK exporting nowhere, ${ROUNDS} rounds`);
  const sdks = {
    sdk: noopSdk(),
    sampled: noopSdk({ sampleRatio: 0.1 }),
    withoutStatementSpans: noopSdk({ statementSpans: false }),
    metricsOnly: noopSdk({ traces: false }),
  };
  // Each read in a consistency context of its own, as behind the HTTP middleware: Node's
  // AsyncLocalStorage (Regional's, and the SDK's context manager) then costs every
  // configuration alike, and what differs is OpenTelemetry's own work.
  const read = (id: number) => withContext(() => pool.query(SELECT_PG, [id]));
  const {
    sdk: reads,
    sampled,
    withoutStatementSpans,
    metricsOnly,
  } = await compare(
    read,
    { sdk: read, sampled: read, withoutStatementSpans: read, metricsOnly: read },
    {
      ...PAIRING,
      prepare: (name) => {
        for (const [which, sdk] of Object.entries(sdks)) if (which !== name) sdk.unregister();
        if (name in sdks) sdks[name as keyof typeof sdks].register();
      },
    },
  );
  await Promise.all(Object.values(sdks).map((sdk) => sdk.shutdown()));
  progress('pg: routing with and without @opentelemetry/api installed (no SDK), 3 processes each');
  const { onWarning: _, ...options } = settings;
  const withApi: number[] = [];
  const withoutApi: number[] = [];
  for (let i = 0; i < 3; i++) {
    withApi.push(await childRoutingMicros(options, false));
    withoutApi.push(await childRoutingMicros(options, true));
  }
  const routingMicros = {
    withoutApi: round(median(withoutApi), 3),
    withApiNoSdk: round(median(withApi), 3),
  };
  return {
    cpuMicrosPerRead: {
      noSdk: round(reads.raw.cpuMicrosPerRead, 1),
      sdk: round(reads.regional.cpuMicrosPerRead, 1),
      sdkSampled10Pct: round(sampled.regional.cpuMicrosPerRead, 1),
      sdkWithoutStatementSpans: round(withoutStatementSpans.regional.cpuMicrosPerRead, 1),
      sdkMetricsOnly: round(metricsOnly.regional.cpuMicrosPerRead, 1),
    },
    /** The same with only a MeterProvider registered (metrics, no spans). */
    otelMetricsOnlyCpuOverheadPct: round((median(metricsOnly.cpuRatios) - 1) * 100),
    /** The same with the SDK sampling 10 % of traces (ParentBased(TraceIdRatioBased(0.1))). */
    otelSampledCpuOverheadPct: round((median(sampled.cpuRatios) - 1) * 100),
    /** The same with a sampler that records every span but `regional.query` (as the docs show). */
    otelWithoutStatementSpansCpuOverheadPct: round(
      (median(withoutStatementSpans.cpuRatios) - 1) * 100,
    ),
    otelCpuOverheadPct: round((median(reads.cpuRatios) - 1) * 100),
    otelCpuOverheadPctQuartiles: [
      round((percentile(reads.cpuRatios, 25) - 1) * 100),
      round((percentile(reads.cpuRatios, 75) - 1) * 100),
    ],
    routingMicros,
    routingMicrosSamples: {
      withApiNoSdk: withApi.map((m) => round(m, 3)),
      withoutApi: withoutApi.map((m) => round(m, 3)),
    },
    otelNoSdkOverheadPct: round(
      ((median(withApi) - median(withoutApi)) / reads.raw.cpuMicrosPerRead) * 100,
      3,
    ),
  };
}

/** {@link pgRoutingMicros} in a child process, with `@opentelemetry/api` hidden or not. */
async function childRoutingMicros(
  options: Record<string, unknown>,
  hideApi: boolean,
): Promise<number> {
  const here = (file: string) => fileURLToPath(new URL(`./support/${file}`, import.meta.url));
  const { stdout } = await execFileAsync(
    process.execPath,
    [
      '--conditions=regional-source',
      '--import',
      'tsx',
      ...(hideApi ? ['--import', pathToFileURL(here('hide-otel-api.ts')).href] : []),
      here('routing-child.ts'),
      JSON.stringify(options),
    ],
    { timeout: 120_000 },
  );
  const { micros } = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as { micros: number };
  return micros;
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

interface Waiting {
  waitFor(lsn: Lsn, timeoutMs: number): Promise<number>;
}

/**
 * `WAIT_SAMPLES` writes, 10 at a time, each then waiting for the replica through `source`; how
 * long each wait lasted beyond the replica's actual replay of the write.
 */
async function waitOverhead(
  replicaUrl: string,
  source: Waiting,
  write: (id: number) => Promise<unknown>,
) {
  for (let i = 1; i <= 20; i++) await withContext(() => write(i)); // warm up
  const observer = startObserver(replicaUrl);
  const waits: { lsn: Lsn; ackAt: number; resolvedAt: number }[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 10 }, async () => {
      while (next < WAIT_SAMPLES) {
        const id = (next++ % ROWS) + 1;
        await withContext(async () => {
          await write(id);
          const lsn = currentContext().entries()[0]?.[1] as Lsn;
          const ackAt = performance.now();
          await source.waitFor(lsn, 5000);
          waits.push({ lsn, ackAt, resolvedAt: performance.now() });
        });
      }
    }),
  );
  await new Promise((resolve) => setTimeout(resolve, 50));
  await observer.stop();
  const overheads: number[] = [];
  let unobserved = 0;
  for (const { lsn, resolvedAt } of waits) {
    const replayedAt = observer.replayedAt(lsn);
    if (replayedAt === null) unobserved++;
    else overheads.push(Math.max(0, resolvedAt - replayedAt));
  }
  return {
    overheads,
    unobserved,
    ackToReadableP50: percentile(
      waits.map((w) => w.resolvedAt - w.ackAt),
      50,
    ),
  };
}

/** Round trips on the syd→iad link that `write` takes, after warming its connection. */
async function roundTrips(cluster: LocalCluster, write: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < 3; i++) await write();
  const link = cluster.link('iad', 'syd');
  const before = link.stats('postgres').roundTrips;
  await write();
  return link.stats('postgres').roundTrips - before;
}

export async function run(): Promise<void> {
  progress('starting a primary (iad) and a replica (syd), 50 ms one way');
  const cluster = await LocalCluster.start({
    temporary: true,
    regions: ['iad', 'syd'],
    rttMs: { syd: 2 * ONE_WAY_MS },
  });
  const closers: (() => Promise<unknown>)[] = [];
  try {
    await cluster.query(
      'iad',
      `CREATE TABLE items (id int PRIMARY KEY, value int NOT NULL, body text NOT NULL);
       INSERT INTO items SELECT g, 0, repeat('x', 100) FROM generate_series(1, ${ROWS}) g;`,
    );
    await cluster.waitForReplay('syd');
    const syd = cluster.endpoints('syd');
    const replicaUrl = syd.replicaUrl as string;
    const settings = {
      primaryRegion: 'iad',
      region: 'syd',
      databaseUrl: syd.databaseUrl,
      replicaUrl,
      onWarning: () => {},
    };

    // node-postgres: a raw pg.Pool on the replica against RegionalPool.
    // Also RegionalPool without its query timeout (node-postgres's `query_timeout` arms a
    // timer per query), to show what that bound costs on its own.
    progress(`pg: raw pg.Pool vs RegionalPool, ${ROUNDS} rounds of ${SLICE_MS} ms each`);
    const rawPg = new pg.Pool({ connectionString: replicaUrl, max: 20 });
    const pool = new RegionalPool({ ...settings, pool: { max: 20 } });
    const untimed = new RegionalPool({ ...settings, queryTimeoutMs: 0, pool: { max: 20 } });
    closers.push(
      () => rawPg.end(),
      () => pool.end(),
      () => untimed.end(),
    );
    const pgReads = await compare(
      (id) => rawPg.query(SELECT_PG, [id]),
      {
        defaults: (id) => pool.query(SELECT_PG, [id]),
        noQueryTimeout: (id) => untimed.query(SELECT_PG, [id]),
      },
      PAIRING,
    );
    const pgRouting = await pgRoutingMicros(pool);
    const otel = await measureOtel(pool, settings);
    progress(`pg: wait overhead, ${WAIT_SAMPLES} writes against an observer`);
    const pgWait = await waitOverhead(replicaUrl, pool, (id) => pool.query(UPDATE_PG, [id]));
    const rawPgPrimary = new pg.Pool({ connectionString: syd.databaseUrl, max: 1 });
    const onePool = new RegionalPool({ ...settings, pool: { max: 1 } });
    closers.push(
      () => rawPgPrimary.end(),
      () => onePool.end(),
    );
    const pgWrites = {
      raw: await roundTrips(cluster, () => rawPgPrimary.query(UPDATE_PG, [1])),
      regional: await roundTrips(cluster, () => withContext(() => onePool.query(UPDATE_PG, [1]))),
    };

    // postgres.js: a raw postgres() on the replica against RegionalPostgres.
    progress(`postgres.js: raw postgres() vs RegionalPostgres, ${ROUNDS} rounds`);
    const rawJs = postgres(replicaUrl, { max: 20, onnotice: () => {} });
    const database = new RegionalPostgres({ ...settings, postgres: { max: 20 } });
    closers.push(
      () => rawJs.end(),
      () => database.end(),
    );
    const { sql } = database;
    const { regional: jsReads } = await compare(
      (id) => rawJs`select id, value, body from items where id = ${id}`,
      { regional: (id) => sql`select id, value, body from items where id = ${id}` },
      PAIRING,
    );
    progress(`postgres.js: wait overhead, ${WAIT_SAMPLES} writes against an observer`);
    const jsWait = await waitOverhead(
      replicaUrl,
      database,
      (id) => sql`update items set value = value + 1 where id = ${id}`,
    );
    const rawJsPrimary = postgres(syd.databaseUrl, { max: 1, onnotice: () => {} });
    const oneDatabase = new RegionalPostgres({ ...settings, postgres: { max: 1 } });
    closers.push(
      () => rawJsPrimary.end(),
      () => oneDatabase.end(),
    );
    const one = oneDatabase.sql;
    const jsWrites = {
      raw: await roundTrips(
        cluster,
        () => rawJsPrimary`update items set value = value + 1 where id = ${1}`,
      ),
      regional: await roundTrips(cluster, () =>
        withContext(() => one`update items set value = value + 1 where id = ${1}`),
      ),
    };
    const jsUnprepared = {
      raw: await roundTrips(cluster, () => rawJsPrimary.unsafe(UPDATE_PG, [1], { prepare: false })),
      regional: await roundTrips(cluster, () =>
        withContext(() => one.unsafe(UPDATE_PG, [1], { prepare: false })),
      ),
    };

    // Queries per tracker poll with 10,000 waiters, counted at a proxy in front of the replica.
    progress('tracker cost: 10,000 concurrent waiters');
    const proxy = new LatencyProxy({
      name: 'count',
      targetPort: Number(new URL(replicaUrl).port),
      oneWayMs: 0,
    });
    await proxy.listen();
    closers.push(() => proxy.close());
    const countedUrl = new URL(replicaUrl);
    countedUrl.port = String(proxy.port);
    const waiting = new RegionalPool({ ...settings, replicaUrl: countedUrl.toString() });
    closers.push(() => waiting.end());
    await waiting.waitFor(0n, 5000);
    const pollsBefore = waiting.stats().tracker?.polls ?? 0;
    await cluster.pauseReplay('syd');
    await cluster.query('iad', 'UPDATE items SET value = value + 1 WHERE id = 1');
    const target = await cluster.primaryLsn();
    proxy.resetStats();
    const waiters = Array.from({ length: 10_000 }, () => waiting.waitFor(target, 30_000));
    await new Promise((resolve) => setTimeout(resolve, 200));
    await cluster.resumeReplay('syd');
    await Promise.all(waiters);
    const polls = (waiting.stats().tracker?.polls ?? 0) - pollsBefore;
    const trackerQueriesPerPoll = proxy.stats().roundTrips / polls;

    const driver = (
      reads: Compared,
      routingMicros: number | null,
      wait: Awaited<ReturnType<typeof waitOverhead>>,
      writes: { raw: number; regional: number },
    ) => ({
      cpuMicrosPerRead: {
        raw: round(reads.raw.cpuMicrosPerRead, 1),
        regional: round(reads.regional.cpuMicrosPerRead, 1),
      },
      cpuOverheadPct: round((median(reads.cpuRatios) - 1) * 100),
      cpuOverheadPctQuartiles: [
        round((percentile(reads.cpuRatios, 25) - 1) * 100),
        round((percentile(reads.cpuRatios, 75) - 1) * 100),
      ],
      readsPerSecond: {
        raw: round(reads.raw.perSecond, 0),
        regional: round(reads.regional.perSecond, 0),
      },
      readOverheadPct: round((1 - median(reads.rateRatios)) * 100),
      readOverheadPctQuartiles: [
        round((1 - percentile(reads.rateRatios, 75)) * 100),
        round((1 - percentile(reads.rateRatios, 25)) * 100),
      ],
      routingMicrosPerQuery: routingMicros === null ? null : round(routingMicros, 3),
      cpuDifferenceMicrosPerRead: round(median(reads.cpuDifferences)),
      waitOverheadMsP50: round(percentile(wait.overheads, 50)),
      waitOverheadMsP99: round(percentile(wait.overheads, 99)),
      waitSamples: wait.overheads.length,
      waitSamplesWithoutObservation: wait.unobserved,
      writeAckToReadableMsP50: round(wait.ackToReadableP50),
      writeRoundTrips: writes,
    });
    const drivers = {
      pg: {
        ...driver(pgReads.defaults, pgRouting, pgWait, pgWrites),
        withoutQueryTimeout: {
          cpuMicrosPerRead: round(pgReads.noQueryTimeout.regional.cpuMicrosPerRead, 1),
          cpuOverheadPct: round((median(pgReads.noQueryTimeout.cpuRatios) - 1) * 100),
          readOverheadPct: round((1 - median(pgReads.noQueryTimeout.rateRatios)) * 100),
        },
      },
      postgres: {
        ...driver(jsReads, median(jsReads.cpuDifferences), jsWait, jsWrites),
        routingMeasuredAs:
          'median client CPU difference per read (no I/O-free seam in postgres.js)',
        unpreparedWriteRoundTrips: jsUnprepared,
      },
    };
    const { pg: p } = drivers;
    const results = {
      oneWayMs: ONE_WAY_MS,
      // node-postgres, as before the per-driver figures existed.
      readOverheadPct: p.readOverheadPct,
      readOverheadPctQuartiles: p.readOverheadPctQuartiles,
      readsPerSecond: { rawPgPool: p.readsPerSecond.raw, regionalPool: p.readsPerSecond.regional },
      clientCpuMicrosPerRead: {
        rawPgPool: p.cpuMicrosPerRead.raw,
        regionalPool: p.cpuMicrosPerRead.regional,
      },
      routingMicrosPerQuery: p.routingMicrosPerQuery,
      waitOverheadMsP50: p.waitOverheadMsP50,
      waitOverheadMsP99: p.waitOverheadMsP99,
      waitSamples: p.waitSamples,
      writeAckToReadableMsP50: p.writeAckToReadableMsP50,
      trackerWaiters: 10_000,
      trackerPolls: polls,
      trackerQueriesPerPoll: round(trackerQueriesPerPoll, 3),
      otelCpuOverheadPct: otel.otelCpuOverheadPct,
      otelNoSdkOverheadPct: otel.otelNoSdkOverheadPct,
      otel,
      drivers,
      goals: {
        otelCpuOverheadPct: '<= 3',
        otelNoSdkOverheadPct: '<= 0.5',
        cpuOverheadPct: '<= 2',
        readOverheadPct: '<= 3',
        waitOverheadMsP50: '<= 2',
        writeRoundTrips: '1',
        trackerQueriesPerPoll: '1',
      },
    };

    const js = drivers.postgres;
    printTable(
      `Replica reads, raw driver vs Regional (${ROUNDS} rounds of ${SLICE_MS} ms slices, ${CONCURRENCY} concurrent; medians)`,
      [
        ['', 'pg raw', 'RegionalPool', 'postgres.js raw', 'RegionalPostgres', 'goal'],
        [
          'client CPU µs/read',
          p.cpuMicrosPerRead.raw,
          p.cpuMicrosPerRead.regional,
          js.cpuMicrosPerRead.raw,
          js.cpuMicrosPerRead.regional,
          '',
        ],
        ['cpuOverheadPct (paired)', '', p.cpuOverheadPct, '', js.cpuOverheadPct, '<= 2'],
        [
          'cpuOverheadPct, queryTimeoutMs: 0',
          '',
          p.withoutQueryTimeout.cpuOverheadPct,
          '',
          '(no timeout)',
          '',
        ],
        [
          'reads/s',
          p.readsPerSecond.raw,
          p.readsPerSecond.regional,
          js.readsPerSecond.raw,
          js.readsPerSecond.regional,
          '',
        ],
        ['readOverheadPct (paired)', '', p.readOverheadPct, '', js.readOverheadPct, '<= 3'],
        ['routing µs/query (no I/O)', '', p.routingMicrosPerQuery ?? '', '', 'not timed', ''],
        [
          'CPU µs/read difference (paired)',
          '',
          p.cpuDifferenceMicrosPerRead,
          '',
          js.cpuDifferenceMicrosPerRead,
          '',
        ],
      ],
    );
    printTable(`Writes and waits (${ONE_WAY_MS} ms one way)`, [
      ['', 'pg raw', 'RegionalPool', 'postgres.js raw', 'RegionalPostgres', 'goal'],
      [
        'round trips, one write',
        p.writeRoundTrips.raw,
        p.writeRoundTrips.regional,
        js.writeRoundTrips.raw,
        js.writeRoundTrips.regional,
        'same as raw',
      ],
      [
        'round trips, unprepared parameterised write',
        '',
        '',
        js.unpreparedWriteRoundTrips.raw,
        js.unpreparedWriteRoundTrips.regional,
        '',
      ],
      ['waitOverheadMsP50', '', p.waitOverheadMsP50, '', js.waitOverheadMsP50, '<= 2'],
      ['waitOverheadMsP99', '', p.waitOverheadMsP99, '', js.waitOverheadMsP99, ''],
      [
        'write ack -> readable p50 (ms)',
        '',
        p.writeAckToReadableMsP50,
        '',
        js.writeAckToReadableMsP50,
        '',
      ],
    ]);
    printTable('OpenTelemetry (RegionalPool, replica reads)', [
      ['', 'value', 'goal'],
      ['client CPU µs/read, no SDK', otel.cpuMicrosPerRead.noSdk, ''],
      ['client CPU µs/read, SDK exporting nowhere', otel.cpuMicrosPerRead.sdk, ''],
      ['otelCpuOverheadPct (paired)', otel.otelCpuOverheadPct, '<= 3'],
      [
        'client CPU µs/read, SDK sampling 10 % of traces',
        otel.cpuMicrosPerRead.sdkSampled10Pct,
        '',
      ],
      ['the same, overhead % (paired)', otel.otelSampledCpuOverheadPct, ''],
      [
        'client CPU µs/read, SDK recording no regional.query spans',
        otel.cpuMicrosPerRead.sdkWithoutStatementSpans,
        '',
      ],
      ['the same, overhead % (paired)', otel.otelWithoutStatementSpansCpuOverheadPct, ''],
      ['client CPU µs/read, metrics only (no tracer)', otel.cpuMicrosPerRead.sdkMetricsOnly, ''],
      ['the same, overhead % (paired)', otel.otelMetricsOnlyCpuOverheadPct, ''],
      ['routing µs/query without @opentelemetry/api', otel.routingMicros.withoutApi, ''],
      ['routing µs/query with it, no SDK', otel.routingMicros.withApiNoSdk, ''],
      ['otelNoSdkOverheadPct (of CPU per read)', otel.otelNoSdkOverheadPct, '<= 0.5'],
    ]);
    printTable('Tracker', [
      ['metric', 'value', 'goal'],
      ['trackerQueriesPerPoll (10,000 waiters)', results.trackerQueriesPerPoll, '1'],
      ['tracker polls for them', polls, ''],
    ]);
    writeResults('core', results);
  } finally {
    for (const close of closers.reverse()) await close().catch(() => {});
    await cluster.stop();
  }
}
