/**
 * `npm run bench -- procedures`: a transaction of 1, 5 or 20 writes made from a replica
 * region (syd), run as a procedure on a primary-region instance (iad) and run directly over
 * syd's own connection to the primary, at 40 ms and 100 ms one way between the regions.
 * For each: median latency of the call, and round trips that crossed the link (counted by
 * the link's proxies, replication excluded). For one statement, also the pipelined direct
 * write (`pool.query`) and a forwarded statement (`writes: 'forward'`).
 *
 * Configurations alternate call by call, so drift on this shared machine hits them alike.
 */
import { randomBytes } from 'node:crypto';
import { RegionalPool } from '../src/pg/pool.js';
import { Procedures } from '../src/rpc/procedures.js';
import { LocalCluster } from '../src/testing/cluster.js';
import { median, printTable, progress, round, writeResults } from './support/report.js';

const ONE_WAY_MS = [40, 100];
const STATEMENTS = [1, 5, 20];
const ITERATIONS = 7;
const SECRET = randomBytes(32).toString('hex');

type Mode = 'procedure' | 'direct transaction' | 'direct pool.query' | 'forwarded statement';

interface Sample {
  ms: number;
  roundTrips: number;
}

const insert = 'INSERT INTO bench_items (n, body) VALUES ($1, $2)';

function define(procedures: Procedures): void {
  for (const n of STATEMENTS) {
    procedures.define(`write${n}`, async (tx, input: { body: string }) => {
      for (let i = 1; i <= n; i++) await tx.query(insert, [i, input.body]);
      return n;
    });
  }
}

export async function run(): Promise<void> {
  progress('starting a primary (iad) and a replica (syd)');
  const cluster = await LocalCluster.start({
    temporary: true,
    regions: ['iad', 'syd'],
    rttMs: { syd: 2 * (ONE_WAY_MS[0] as number) },
  });
  const closers: (() => Promise<void>)[] = [];
  try {
    await cluster.query(
      'iad',
      'CREATE TABLE bench_items (id bigserial PRIMARY KEY, n int NOT NULL, body text NOT NULL)',
    );
    await cluster.waitForReplay('syd');
    const iadPool = new RegionalPool({
      primaryRegion: 'iad',
      region: 'iad',
      databaseUrl: cluster.endpoints('iad').databaseUrl,
      writes: 'forward', // serves forwarded statements
    });
    const iad = new Procedures({ pool: iadPool, secret: SECRET, env: {} });
    define(iad);
    const server = await iad.listen(0, '127.0.0.1');
    closers.push(async () => {
      await iad.close();
      await iadPool.end();
    });
    const rpcPort = await cluster.route({
      from: 'syd',
      to: 'iad',
      port: Procedures.portOf(server),
      name: 'rpc',
    });
    const syd = cluster.endpoints('syd');
    const sydApp = (writes: 'direct' | 'forward') => {
      const pool = new RegionalPool({
        primaryRegion: 'iad',
        region: 'syd',
        databaseUrl: syd.databaseUrl,
        replicaUrl: syd.replicaUrl,
        writes,
      });
      const procedures = new Procedures({
        pool,
        secret: SECRET,
        primaryUrl: `http://127.0.0.1:${rpcPort}`,
        env: {},
      });
      define(procedures);
      closers.push(async () => {
        await procedures.close();
        await pool.end();
      });
      return { pool, procedures };
    };
    const direct = sydApp('direct');
    const forwarding = sydApp('forward');
    const link = cluster.link('syd', 'iad');

    const runners: Record<Mode, (n: number) => Promise<unknown>> = {
      procedure: (n) => direct.procedures.call(`write${n}`, { body: 'procedure' }),
      'direct transaction': (n) =>
        direct.pool.transaction(async (tx) => {
          for (let i = 1; i <= n; i++) await tx.query(insert, [i, 'direct']);
        }),
      'direct pool.query': () => direct.pool.query(insert, [1, 'pool.query']),
      'forwarded statement': () => forwarding.pool.query(insert, [1, 'forwarded']),
    };
    const modesFor = (n: number): Mode[] =>
      n === 1
        ? ['procedure', 'direct transaction', 'direct pool.query', 'forwarded statement']
        : ['procedure', 'direct transaction'];

    async function measure(mode: Mode, n: number): Promise<Sample> {
      link.resetStats();
      const started = performance.now();
      await runners[mode](n);
      const ms = performance.now() - started;
      const roundTrips =
        link.stats('syd->iad rpc').roundTrips + link.stats('syd->iad postgres').roundTrips;
      return { ms, roundTrips };
    }

    const rows: {
      oneWayMs: number;
      statements: number;
      mode: Mode;
      medianMs: number;
      minMs: number;
      maxMs: number;
      roundTrips: number;
      iterations: number;
    }[] = [];
    for (const oneWay of ONE_WAY_MS) {
      link.setRtt(2 * oneWay);
      progress(`${oneWay} ms one way: warming up connections`);
      for (const n of STATEMENTS) for (const mode of modesFor(n)) await runners[mode](n);
      for (const n of STATEMENTS) {
        const modes = modesFor(n);
        progress(`${oneWay} ms one way, ${n} statement(s): ${ITERATIONS} calls of each`);
        const samples = new Map<Mode, Sample[]>(modes.map((m) => [m, []]));
        for (let i = 0; i < ITERATIONS; i++) {
          // Alternate the order so neither configuration always goes first.
          const order = i % 2 === 0 ? modes : [...modes].reverse();
          for (const mode of order) samples.get(mode)?.push(await measure(mode, n));
        }
        for (const mode of modes) {
          const list = samples.get(mode) as Sample[];
          const times = list.map((s) => s.ms);
          rows.push({
            oneWayMs: oneWay,
            statements: n,
            mode,
            medianMs: round(median(times), 1),
            minMs: round(Math.min(...times), 1),
            maxMs: round(Math.max(...times), 1),
            roundTrips: median(list.map((s) => s.roundTrips)),
            iterations: list.length,
          });
        }
      }
    }

    const find = (oneWay: number, n: number, mode: Mode) =>
      rows.find((r) => r.oneWayMs === oneWay && r.statements === n && r.mode === mode);
    const table: (string | number)[][] = [
      ['one way', 'statements', 'mode', 'median ms', 'round trips', 'vs procedure'],
    ];
    for (const row of rows) {
      const procedure = find(row.oneWayMs, row.statements, 'procedure');
      table.push([
        `${row.oneWayMs} ms`,
        row.statements,
        row.mode,
        row.medianMs,
        row.roundTrips,
        procedure && row.mode !== 'procedure'
          ? `${round(row.medianMs / procedure.medianMs, 1)}x`
          : '',
      ]);
    }
    printTable(
      `Writes from syd to the primary in iad (median of ${ITERATIONS} calls each; round trips crossing the link)`,
      table,
    );
    writeResults('procedures', {
      description:
        'A transaction of N inserts made from a replica region: as a procedure (one HTTP round trip to a primary-region instance) vs directly over a connection to the primary. Round trips are counted by the link proxies (replication excluded).',
      iterations: ITERATIONS,
      results: rows,
    });
  } finally {
    for (const close of closers.reverse()) await close().catch(() => {});
    await cluster.stop();
  }
}
