/** regional/prisma on a real cluster, through a Prisma 7 client generated from test/fixtures/prisma. */
import { PrismaPg } from '@prisma/adapter-pg';
import { readReplicas } from '@prisma/extension-read-replicas';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PrismaClient } from '../../test/fixtures/prisma/client/client.js';
import { countersTable, countStaleReads } from '../../test/support/consistency.js';
import { currentContext, runInContext, withContext } from '../core/context.js';
import { RegionalPool } from '../pg/pool.js';
import { Procedures } from '../rpc/procedures.js';
import { LocalCluster } from '../testing/cluster.js';
import { PrismaRegional, prismaProcedure, readOnly, regionalExtension } from './index.js';

const SECRET = '5f1c0b7e3a9d4c2b8e6f0a1d3c5b7e9f2a4c6e8b0d1f3a5c7e9b2d4f6a8c0e1b';

let cluster: LocalCluster;
let pool: RegionalPool;
const extended = (pool: RegionalPool) =>
  new PrismaClient({ adapter: new PrismaRegional(pool) }).$extends(regionalExtension);
let prisma: ReturnType<typeof extended>;
const closers: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  cluster = await LocalCluster.start({
    temporary: true,
    regions: ['iad', 'syd'],
    rttMs: { syd: 100 },
  });
  await cluster.query(
    'iad',
    `${countersTable()}
     CREATE TABLE notes (id serial PRIMARY KEY, body text UNIQUE NOT NULL, created_at timestamp(3) NOT NULL DEFAULT now());
     CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL);
     INSERT INTO accounts VALUES (1, 1000), (2, 1000);
     CREATE SEQUENCE tickets;
     CREATE FUNCTION take_ticket() RETURNS int LANGUAGE sql AS $$ SELECT nextval('tickets')::int $$;`,
  );
  await cluster.waitForReplay('syd');
  const syd = cluster.endpoints('syd');
  pool = new RegionalPool({
    primaryRegion: 'iad',
    region: 'syd',
    databaseUrl: syd.databaseUrl,
    replicaUrl: syd.replicaUrl,
    onWarning: () => {},
  });
  prisma = extended(pool);
  closers.push(
    () => prisma.$disconnect(),
    () => pool.end(),
  );
});

afterAll(async () => {
  for (const close of closers.reverse()) await close();
  await cluster?.stop();
});

const inRecovery = async (client: Pick<typeof prisma, '$queryRaw'>) =>
  ((await client.$queryRaw`SELECT pg_is_in_recovery() AS r`) as { r: boolean }[])[0]?.r;

describe('regional/prisma in a replica region', () => {
  it('reads run on the replica, writes on the primary, from the SQL Prisma sends', async () => {
    expect(await inRecovery(prisma)).toBe(true);
    const before = pool.stats();
    const note = await withContext(async () => {
      const created = await prisma.note.create({ data: { body: 'first' } });
      return prisma.note.findUnique({ where: { id: created.id } });
    });
    expect(note?.body).toBe('first');
    expect(note?.createdAt).toBeInstanceOf(Date);
    const after = pool.stats();
    expect(after.writes - before.writes).toBe(1);
    expect(after.replicaReads - before.replicaReads).toBe(1);
  });

  it('an update then a findUnique in the same context, 300 times: never stale', async () => {
    const stale = await countStaleReads(
      300,
      async (id) =>
        (await prisma.counter.update({ where: { id }, data: { value: { increment: 1 } } })).value,
      async (id) => (await prisma.counter.findUnique({ where: { id } }))?.value,
    );
    expect(stale).toBe(0);
  });

  it("the same loop with Prisma's own read replicas extension sees stale reads", async () => {
    const syd = cluster.endpoints('syd');
    const primary = new PrismaClient({
      adapter: new PrismaPg({ connectionString: syd.databaseUrl }),
    });
    const replica = new PrismaClient({
      adapter: new PrismaPg({ connectionString: syd.replicaUrl as string }),
    });
    const client = primary.$extends(readReplicas({ replicas: [replica] }));
    try {
      const stale = await countStaleReads(
        300,
        async (id) =>
          (await client.counter.update({ where: { id }, data: { value: { increment: 1 } } })).value,
        async (id) => (await client.counter.findUnique({ where: { id } }))?.value,
      );
      expect(stale).toBeGreaterThan(0);
    } finally {
      await Promise.all([primary.$disconnect(), replica.$disconnect()]);
    }
  });

  it('interactive and batch transactions run on the primary and record their commit', async () => {
    const [seen, where] = await withContext(async () => {
      const inside = await prisma.$transaction(async (tx) => {
        await tx.counter.update({ where: { id: 1 }, data: { value: 1000 } });
        return inRecovery(tx);
      });
      await prisma.$transaction([
        prisma.counter.update({ where: { id: 2 }, data: { value: 2000 } }),
        prisma.counter.update({ where: { id: 3 }, data: { value: 3000 } }),
      ]);
      const rows = await prisma.counter.findMany({
        where: { id: { in: [1, 2, 3] } },
        orderBy: { id: 'asc' },
      });
      return [rows.map((r) => r.value), inside];
    });
    expect(seen).toEqual([1000, 2000, 3000]);
    expect(where).toBe(false);
  });

  it('a transaction that throws rolls back; nested ones are savepoints', async () => {
    await expect(
      prisma.$transaction(async (tx) => {
        await tx.counter.update({ where: { id: 1504 }, data: { value: 44 } });
        throw new Error('no');
      }),
    ).rejects.toThrow('no');
    const row = await withContext(() => prisma.counter.findUnique({ where: { id: 1504 } }));
    expect(row?.value).toBe(0);
  });

  it('readOnly: a transaction runs on the replica and sees this context’s writes', async () => {
    await withContext(async () => {
      await prisma.counter.update({ where: { id: 1505 }, data: { value: 55 } });
      const [where, row] = await readOnly(() =>
        prisma.$transaction(async (tx) => [
          await inRecovery(tx),
          await tx.counter.findUnique({ where: { id: 1505 } }),
        ]),
      );
      expect(where).toBe(true);
      expect(row?.value).toBe(55);
      await expect(
        readOnly(() =>
          prisma.$transaction(async (tx) =>
            tx.counter.update({ where: { id: 1505 }, data: { value: 1 } }),
          ),
        ),
      ).rejects.toThrow(/read-only transaction/);
    });
  });

  it('raw queries are routed from their text; a SELECT that writes is retried on the primary', async () => {
    const retries = pool.stats().readOnlyRetries;
    const [ticket] = (await prisma.$queryRaw`SELECT take_ticket() AS n`) as { n: number }[];
    expect(ticket?.n).toBeGreaterThan(0);
    expect(pool.stats().readOnlyRetries).toBe(retries + 1);
    const changed = await prisma.$executeRaw`UPDATE counters SET value = value WHERE id = 1`;
    expect(changed).toBe(1);
  });

  // Prisma runs the queries made in one tick in the context of the first caller (here a
  // reader that needs nothing), and findUnique calls of one shape as a single query.
  it.each([
    ['one query for both (findUnique of one shape)', 1602, 1601],
    ['a query each (different shapes)', 'note', 1603],
  ] as const)(
    'reads of two requests in the same tick, %s: each sees what its own context needs',
    async (_, other, id) => {
      await cluster.pauseReplay('syd');
      try {
        const writer = await withContext(async () => {
          await prisma.counter.update({ where: { id }, data: { value: 7 } });
          return currentContext();
        });
        const [read, written] = await Promise.all([
          withContext(async () =>
            other === 'note'
              ? (await prisma.note.findUnique({ where: { id: 1 } }))?.id
              : (await prisma.counter.findUnique({ where: { id: other } }))?.value,
          ),
          runInContext(writer, async () => await prisma.counter.findUnique({ where: { id } })),
        ]);
        expect(written?.value).toBe(7); // past the bound, from the primary: not the replica's 0
        expect(read).not.toBeUndefined();
      } finally {
        await cluster.resumeReplay('syd');
      }
    },
  );

  it('prismaProcedure: a three-statement transaction from syd costs one round trip to iad', async () => {
    const procedures = { iad: null as Procedures | null, syd: null as Procedures | null };
    const iadPool = new RegionalPool({
      primaryRegion: 'iad',
      region: 'iad',
      databaseUrl: cluster.endpoints('iad').databaseUrl,
      onWarning: () => {},
    });
    const iadPrisma = extended(iadPool);
    closers.push(
      () => iadPrisma.$disconnect(),
      () => iadPool.end(),
    );
    type Db = Parameters<Parameters<typeof prisma.$transaction>[0]>[0];
    const body = async (db: Db, input: { amount: number }) => {
      await db.account.update({ where: { id: 1 }, data: { balance: { decrement: input.amount } } });
      await db.account.update({ where: { id: 2 }, data: { balance: { increment: input.amount } } });
      const [one, two] = await db.account.findMany({ orderBy: { id: 'asc' } });
      return { one: one?.balance, two: two?.balance, replica: await inRecovery(db) };
    };
    procedures.iad = new Procedures({
      pool: iadPool,
      secret: SECRET,
    });
    const define = (p: Procedures, client: typeof prisma) =>
      p.define('transfer', prismaProcedure(client, body));
    define(procedures.iad, iadPrisma);
    const server = await procedures.iad.listen(0, '127.0.0.1');
    const port = (server.address() as { port: number }).port;
    closers.push(() => (procedures.iad as Procedures).close());
    const url = `http://127.0.0.1:${await cluster.route({ from: 'syd', to: 'iad', port, name: 'rpc' })}`;
    procedures.syd = new Procedures({
      pool,
      secret: SECRET,
      primaryUrl: url,
    });
    closers.push(() => (procedures.syd as Procedures).close());
    const transfer = define(procedures.syd, prisma);
    await transfer({ amount: 1 }); // a warm connection
    const link = cluster.link('iad', 'syd');
    const before = link.stats('rpc').roundTrips;
    const result = await withContext(async () => {
      const moved = await transfer({ amount: 10 });
      const after = await prisma.account.findUnique({ where: { id: 1 } });
      return { moved, after };
    });
    expect(link.stats('rpc').roundTrips - before).toBe(1);
    expect(result.moved).toEqual({ one: 989, two: 1011, replica: false });
    expect(result.after?.balance).toBe(989);
  });
});

describe('PrismaRegional', () => {
  it('a Prisma client that runs its queries differently inside is refused by name', () => {
    const extend = regionalExtension as unknown as (client: unknown) => unknown;
    expect(() => extend({ _clientVersion: '8.0.0' })).toThrow(
      /this Prisma client \(8\.0\.0\) works differently inside/,
    );
  });

  it('a client without regionalExtension is refused with a clear error, not run unsafely', async () => {
    const plain = new PrismaClient({ adapter: new PrismaRegional(pool) });
    try {
      await expect(plain.counter.findUnique({ where: { id: 1 } })).rejects.toThrow(
        /must be extended with regionalExtension/,
      );
    } finally {
      await plain.$disconnect();
    }
  });

  it('refuses anything but a RegionalPool, saying what it takes', () => {
    expect(() => new PrismaRegional(new pg.Pool() as unknown as RegionalPool)).toThrow(
      /takes a RegionalPool/,
    );
  });
});
