/**
 * `npm run bench -- prisma`: Prisma 7 through `regional/prisma` against what Prisma users have
 * today, on a real primary (iad) and replica (syd) with 50 ms one way between them.
 *
 * - staleReads: an update then a findUnique of the same row, in one context, 300 times from
 *   syd, 50 at a time: through Regional (goal 0), and through `@prisma/extension-read-replicas`
 *   (which reads the replica without waiting: must be > 0, the proof the loop can fail), with
 *   each read's p50 time.
 * - cpuOverheadPct: this process's CPU per findUnique on the replica through PrismaRegional
 *   against `PrismaPg` on a plain pool, in slices whose order rotates every round (goal ≤ 3 %).
 * - A three-statement transaction made in syd: round trips on the syd→iad link and time, as a
 *   Prisma interactive transaction on the primary, as a procedure (`prismaProcedure`: one
 *   round trip), and a two-read `readOnly` transaction (on the replica: none).
 */
import type http from 'node:http';
import { PrismaPg } from '@prisma/adapter-pg';
import { readReplicas } from '@prisma/extension-read-replicas';
import pg from 'pg';
import { withContext } from '../src/core/index.js';
import { RegionalPool } from '../src/pg/index.js';
import {
  PrismaRegional,
  prismaProcedure,
  readOnly,
  regionalExtension,
} from '../src/prisma/index.js';
import { Procedures } from '../src/rpc/index.js';
import { LocalCluster } from '../src/testing/index.js';
import { PrismaClient } from '../test/fixtures/prisma/client/client.js';
import { compare } from './support/paired.js';
import { median, percentile, printTable, progress, round, writeResults } from './support/report.js';

const ONE_WAY_MS = 50;
const ROWS = 2000;
const LOOP = 300;
const LOOP_CONCURRENCY = 50;
const TRANSACTIONS = 15;
const PAIRING = { concurrency: 16, rows: 1000, rounds: 30, sliceMs: 250 };
const SECRET = 'c0ffee5e1c3b0a79d8e6f4a2b1c9d7e5f3a1b9c7d5e3f1a9b7c5d3e1f9a7b5c3';

interface Client {
  counter: {
    update(args: {
      where: { id: number };
      data: { value: { increment: number } };
    }): PromiseLike<{ value: number }>;
    findUnique(args: { where: { id: number } }): PromiseLike<{ value: number } | null>;
  };
}

/**
 * `LOOP` update-then-findUnique sequences, `LOOP_CONCURRENCY` at a time, each in its own
 * context: how many reads missed their own write, and the reads' p50 time.
 */
async function staleLoop(client: Client) {
  let stale = 0;
  let next = 0;
  const readMs: number[] = [];
  await Promise.all(
    Array.from({ length: LOOP_CONCURRENCY }, async () => {
      while (next < LOOP) {
        const id = (next++ % ROWS) + 1;
        await withContext(async () => {
          const { value } = await client.counter.update({
            where: { id },
            data: { value: { increment: 1 } },
          });
          const started = performance.now();
          const row = await client.counter.findUnique({ where: { id } });
          readMs.push(performance.now() - started);
          if (row?.value !== value) stale++;
        });
      }
    }),
  );
  return { stale, readP50Ms: percentile(readMs, 50) };
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
      `CREATE TABLE counters (id int PRIMARY KEY, value int NOT NULL);
       INSERT INTO counters SELECT g, 0 FROM generate_series(1, ${ROWS}) g;
       CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL);
       INSERT INTO accounts VALUES (1, 1000000), (2, 1000000);`,
    );
    await cluster.waitForReplay('syd');
    const syd = cluster.endpoints('syd');
    const replicaUrl = syd.replicaUrl as string;
    const pool = new RegionalPool({
      primaryRegion: 'iad',
      region: 'syd',
      databaseUrl: syd.databaseUrl,
      replicaUrl,
      onWarning: () => {},
      pool: { max: 20 },
    });
    const prisma = new PrismaClient({ adapter: new PrismaRegional(pool) }).$extends(
      regionalExtension,
    );
    closers.push(
      () => pool.end(),
      () => prisma.$disconnect(),
    );

    // 1. Read-your-writes: Regional against Prisma's read replicas extension.
    progress(`read your writes: ${LOOP} update-then-findUnique sequences each way`);
    const primaryClient = new PrismaClient({
      adapter: new PrismaPg({ connectionString: syd.databaseUrl, max: 20 }),
    });
    const replicaClient = new PrismaClient({
      adapter: new PrismaPg({ connectionString: replicaUrl, max: 20 }),
    });
    closers.push(
      () => primaryClient.$disconnect(),
      () => replicaClient.$disconnect(),
    );
    const withReplicas = primaryClient.$extends(readReplicas({ replicas: [replicaClient] }));
    await staleLoop(prisma); // warm up both: connections, compiled queries
    await staleLoop(withReplicas);
    const regional = await staleLoop(prisma);
    const extension = await staleLoop(withReplicas);

    // 2. CPU per replica read: PrismaRegional against PrismaPg on a plain pool.
    progress(`CPU per findUnique: PrismaPg vs PrismaRegional, ${PAIRING.rounds} rounds`);
    const rawPool = new pg.Pool({ connectionString: replicaUrl, max: 20 });
    const raw = new PrismaClient({ adapter: new PrismaPg(rawPool) });
    closers.push(
      () => raw.$disconnect(),
      () => rawPool.end(),
    );
    const { regional: reads } = await compare(
      (id) => raw.counter.findUnique({ where: { id } }),
      { regional: (id) => prisma.counter.findUnique({ where: { id } }) },
      PAIRING,
    );

    // 3. A three-statement transaction from syd: plain, as a procedure, read-only.
    progress(`transactions from syd: ${TRANSACTIONS} of each kind`);
    const iadPool = new RegionalPool({
      primaryRegion: 'iad',
      region: 'iad',
      databaseUrl: cluster.endpoints('iad').databaseUrl,
      onWarning: () => {},
    });
    const iadPrisma = new PrismaClient({ adapter: new PrismaRegional(iadPool) }).$extends(
      regionalExtension,
    );
    closers.push(
      () => iadPool.end(),
      () => iadPrisma.$disconnect(),
    );
    type Db = Parameters<Parameters<typeof prisma.$transaction>[0]>[0];
    const transfer = async (db: Db) => {
      await db.account.update({ where: { id: 1 }, data: { balance: { decrement: 1 } } });
      await db.account.update({ where: { id: 2 }, data: { balance: { increment: 1 } } });
      return (await db.account.findMany({ orderBy: { id: 'asc' } })).length;
    };
    const iadProcedures = new Procedures({ pool: iadPool, secret: SECRET });
    iadProcedures.define(
      'transfer',
      prismaProcedure(iadPrisma, (db) => transfer(db)),
    );
    const server: http.Server = await iadProcedures.listen(0, '127.0.0.1');
    const port = (server.address() as { port: number }).port;
    const primaryUrl = `http://127.0.0.1:${await cluster.route({ from: 'syd', to: 'iad', port, name: 'rpc' })}`;
    const sydProcedures = new Procedures({ pool, secret: SECRET, primaryUrl });
    closers.push(
      () => iadProcedures.close(),
      () => sydProcedures.close(),
    );
    const viaProcedure = sydProcedures.define(
      'transfer',
      prismaProcedure(prisma, (db) => transfer(db)),
    );
    const link = cluster.link('iad', 'syd');
    const crossings = () => link.stats('postgres').roundTrips + link.stats('rpc').roundTrips;
    const measure = async (transaction: () => Promise<unknown>) => {
      await withContext(transaction); // warm: connections, compiled queries
      const trips: number[] = [];
      const times: number[] = [];
      for (let i = 0; i < TRANSACTIONS; i++) {
        const before = crossings();
        const started = performance.now();
        await withContext(transaction);
        times.push(performance.now() - started);
        trips.push(crossings() - before);
      }
      return { roundTrips: median(trips), p50Ms: round(percentile(times, 50)) };
    };
    const plain = await measure(() => prisma.$transaction((db) => transfer(db)));
    const oneTrip = await measure(() => viaProcedure(undefined));
    const readOnlyReads = await measure(() =>
      readOnly(() =>
        prisma.$transaction(async (db) => [
          await db.account.findUnique({ where: { id: 1 } }),
          await db.account.findMany({ orderBy: { id: 'asc' } }),
        ]),
      ),
    );

    const results = {
      oneWayMs: ONE_WAY_MS,
      loop: { sequences: LOOP, concurrency: LOOP_CONCURRENCY },
      staleReads: regional.stale,
      staleReadsReadReplicasExtension: extension.stale,
      readP50Ms: {
        regional: round(regional.readP50Ms),
        readReplicasExtension: round(extension.readP50Ms),
      },
      cpuMicrosPerRead: {
        prismaPg: round(reads.raw.cpuMicrosPerRead, 1),
        prismaRegional: round(reads.regional.cpuMicrosPerRead, 1),
      },
      cpuOverheadPct: round((median(reads.cpuRatios) - 1) * 100),
      cpuOverheadPctQuartiles: [
        round((percentile(reads.cpuRatios, 25) - 1) * 100),
        round((percentile(reads.cpuRatios, 75) - 1) * 100),
      ],
      readsPerSecond: {
        prismaPg: round(reads.raw.perSecond, 0),
        prismaRegional: round(reads.regional.perSecond, 0),
      },
      transactionFromReplicaRegion: {
        statements: 3,
        interactive: plain,
        procedure: oneTrip,
        readOnlyTwoReads: readOnlyReads,
      },
      goals: { staleReads: '0', staleReadsReadReplicasExtension: '> 0', cpuOverheadPct: '<= 3' },
    };
    printTable(
      `Read your writes: update then findUnique, ${LOOP} times from syd (${ONE_WAY_MS} ms one way)`,
      [
        ['', 'stale reads', 'read p50 (ms)', 'goal'],
        ['regional/prisma', regional.stale, round(regional.readP50Ms), '0 stale'],
        [
          '@prisma/extension-read-replicas',
          extension.stale,
          round(extension.readP50Ms),
          '> 0 (the loop can fail)',
        ],
      ],
    );
    printTable(
      `findUnique on the replica (${PAIRING.rounds} rounds of ${PAIRING.sliceMs} ms slices)`,
      [
        ['', 'PrismaPg', 'PrismaRegional', 'goal'],
        [
          'client CPU µs/read',
          results.cpuMicrosPerRead.prismaPg,
          results.cpuMicrosPerRead.prismaRegional,
          '',
        ],
        ['cpuOverheadPct (paired)', '', results.cpuOverheadPct, '<= 3'],
        ['reads/s', results.readsPerSecond.prismaPg, results.readsPerSecond.prismaRegional, ''],
      ],
    );
    printTable(`A transaction made in syd (${TRANSACTIONS} each; medians)`, [
      ['', 'round trips to iad', 'p50 (ms)'],
      ['interactive $transaction (2 updates, 1 findMany)', plain.roundTrips, plain.p50Ms],
      ['the same as a procedure (prismaProcedure)', oneTrip.roundTrips, oneTrip.p50Ms],
      [
        'readOnly $transaction (2 reads, on the replica)',
        readOnlyReads.roundTrips,
        readOnlyReads.p50Ms,
      ],
    ]);
    writeResults('prisma', results);
  } finally {
    for (const close of closers.reverse()) await close().catch(() => {});
    await cluster.stop();
  }
}
